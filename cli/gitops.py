"""`aistack init-gitops DIR --from STACK.yaml`: scaffold the base + stage-overlay layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def init_gitops_cmd(
    directory: Annotated[Path, typer.Argument(metavar="DIR",
                                              help="Folder to create (inside your GitOps repository).")],
    source: Annotated[Path, typer.Option("--from", metavar="FILE",
                                         help="The AIStack manifest every stage starts from.")],
    stages: Annotated[str, typer.Option(
        metavar="NAMES", help="Comma-separated stage names, in promotion order.")] = "dev,staging,prod",
    namespace: Annotated[list[str] | None, typer.Option(
        "--namespace", metavar="STAGE=NS",
        help="A stage's namespace (repeatable); the others follow the rule above.")] = None,
) -> None:
    """Scaffold a GitOps folder: one base and an overlay per stage.

    DIR/base holds the AIStack and DIR/stages/<stage> a Kustomize overlay per stage. Each stage gets
    its own namespace: the manifest's with its stage suffix replaced (ai-prod -> ai-dev), else
    <namespace>-<stage> (aistack-<stage> when it names none), or --namespace STAGE=NS; two stages in
    one namespace are refused. Each stage's effective spec is rendered and validated before this
    returns; render one with `kubectl kustomize DIR/stages/<stage>`, promote with
    `aistack promote dev staging --repo DIR`.
    """
    from aistack.api.manifests import ManifestError
    from aistack.cli.promotion.kustomize import KustomizeError
    from aistack.cli.promotion.layout import (Layout, LayoutError, effective_stack, load_stack_doc, scaffold,
                                              stage_namespaces)

    names = [s.strip() for s in stages.split(",") if s.strip()]
    if not names or len(set(names)) != len(names):
        err.print(f"--stages {stages!r}: give distinct, comma-separated stage names", markup=False)
        raise typer.Exit(2)
    overrides = _namespace_options(namespace or [])
    try:
        doc = load_stack_doc(source)
    except (OSError, LayoutError, ManifestError) as error:
        err.print(str(error), markup=False)
        raise typer.Exit(1) from None
    try:
        placed = stage_namespaces(doc, stages=names, overrides=overrides)
    except LayoutError as error:
        err.print(str(error), markup=False)
        raise typer.Exit(2) from None
    try:
        written = scaffold(root=directory, stack_doc=doc, stages=names, namespaces=placed)
        layout = Layout(directory)
        for stage in names:
            _, stack = effective_stack(layout, stage)
            out.print(f"stage {stage}: AIStack {stack.namespace}/{stack.name} valid "
                      f"(stage={stack.spec.stage})", markup=False)
    except (OSError, LayoutError, ManifestError, KustomizeError) as error:
        err.print(str(error), markup=False)
        raise typer.Exit(1) from None
    out.print(f"wrote {len(written)} files under {directory}; commit them, then point Argo CD or Flux "
              f"at {directory}/stages/<stage> (examples: deploy/gitops/)", markup=False)


def _namespace_options(values: list[str]) -> dict[str, str]:
    """`--namespace STAGE=NS` options as a mapping; exit 2 naming a malformed or repeated one."""
    out: dict[str, str] = {}
    for value in values:
        stage, sep, name = value.partition("=")
        if not sep or not stage.strip() or not name.strip():
            err.print(f"--namespace {value!r}: expected STAGE=NAMESPACE, e.g. --namespace dev=ai-dev",
                      markup=False)
            raise typer.Exit(2)
        if stage.strip() in out:
            err.print(f"--namespace {value!r}: stage {stage.strip()!r} is given twice", markup=False)
            raise typer.Exit(2)
        out[stage.strip()] = name.strip()
    return out
