"""The `aistack` command line: one entry point for every target (validate, crd, ...).

The short commands are defined here, the others in their own modules (`cli/up.py`,
`cli/ingest.py`, `cli/eval.py`, `cli/operator.py`, ...) and registered here. Each imports its
heavy dependencies inside the command, so `aistack validate` stays fast and works with only
the core install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from aistack.api.crd import crd_yaml
from aistack.api.images import package_version
from aistack.api.manifests import holds_no_stack, load_documents, no_stack_message
from aistack.api.v1alpha1 import AIStack
from aistack.cli import gitops, promote
from aistack.cli.help import App
from aistack.cli.operator import operator_cmd

app = App(
    name="aistack",
    help="Declare, run and promote production AI stacks from one AIStack manifest.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@app.command("version")
def version_cmd() -> None:
    """Print the aistack version."""
    out.print(package_version())


@app.command("crd")
def crd_cmd() -> None:
    """Print the AIStack CustomResourceDefinition (YAML).

    Install it with `aistack crd | kubectl apply -f -`.
    """
    out.print(crd_yaml(), end="", markup=False)


@app.command("validate")
def validate_cmd(
    files: Annotated[list[Path], typer.Argument(
        metavar="FILE", help="Manifest files (multi-document YAML); - reads standard input.",
        show_default=False)],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only, no summary.")] = False,
) -> None:
    """Check AIStack manifests, one line per error.

    Each error reads file[document]: field: message. Exits 0 when every AIStack is valid, 1 otherwise;
    warnings (what is valid but will not act as it may seem) do not fail it.
    Documents of other kinds are skipped, but a file with no AIStack at all is an error. The summary
    shows each stack's config hash, the one `aistack promote` looks for on evaluation runs. With -,
    reads standard input: `kubectl kustomize deploy/stages/prod | aistack validate -`.
    """
    from aistack.cli.render import canary_warnings, read_input

    stacks: list[tuple[str, AIStack]] = []
    failures = 0
    for path in files:
        name, text = read_input(path)
        docs = load_documents(name, text=text)
        if holds_no_stack(docs):  # "0 AIStack(s) valid" and exit 0 read as a pass
            failures += 1
            err.print(no_stack_message(name, docs), markup=False)
        for doc in docs:
            for error in doc.errors:
                failures += 1
                err.print(f"{doc.where}: {error}", markup=False)
            if doc.stack is not None:
                stacks.append((doc.where, doc.stack))
                for warning in canary_warnings(doc.stack):  # accepted, but not what it may seem
                    err.print(f"warning: {doc.where}: {warning}", markup=False)
    if not quiet and stacks:
        out.print(summary_table(stacks))
        for where, stack in stacks:
            out.print(hash_line(where, stack), markup=False)
    if failures:
        err.print(f"{failures} error(s)", style="bold red")
        raise typer.Exit(1)
    if not quiet:
        out.print(f"{len(stacks)} AIStack(s) valid", style="green")


@app.command("render")
def render_cmd(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A manifest with one AIStack; - reads "
                                                                "standard input.", show_default=False)],
    config_hash: Annotated[bool, typer.Option(
        "--config-hash", help="Print only the stack's config hash (what evaluation runs are tagged "
                              "with and `aistack promote` looks for).")] = False,
) -> None:
    """Print the Kubernetes objects the operator would create.

    The children of FILE's AIStack, as YAML (like `helm template`): review them, diff them, or
    pipe them to `kubectl apply -f -`. Warnings go to stderr, so stdout stays plain YAML. With
    --config-hash, only the hash: `kubectl kustomize deploy/stages/dev | aistack render --config-hash -`.
    """
    from aistack.api.manifests import ManifestError
    from aistack.cli.render import render_yaml, stack_config_hash

    try:
        if config_hash:
            out.print(stack_config_hash(file), markup=False)
            return
        text, warnings = render_yaml(file)
    except ManifestError as error:
        err.print(str(error), markup=False)
        raise typer.Exit(1) from None
    out.print(text, end="", markup=False)
    for warning in warnings:  # on stderr: the YAML on stdout stays clean for `| kubectl apply -f -`
        err.print(f"warning: {warning}", markup=False)


app.command("operator")(operator_cmd)


def summary_table(stacks: list[tuple[str, AIStack]]) -> Table:
    """One row per stack: its model and the layers it declares."""
    table = Table(title="AIStacks")
    for column in ("document", "name", "stage", "model", "layers"):
        table.add_column(column, overflow="fold")
    for where, stack in stacks:
        table.add_row(where, stack.name, stack.spec.stage, describe_model(stack),
                      ", ".join(describe_layers(stack)))
    return table


def hash_line(where: str, stack: AIStack) -> str:
    """A stack's config hash on one line of its own (a table would fold it), greppable."""
    from aistack.api.config_hash import config_hash

    return f"config hash {config_hash(stack.spec)}: {stack.name} (stage {stack.spec.stage}, {where})"


def describe_model(stack: AIStack) -> str:
    model = stack.spec.model
    text = f"{model.provider}: {model.public_name}"
    if model.vllm is not None:
        scaling = model.vllm.autoscaling
        count = (f"{scaling.min_replicas}-{scaling.max_replicas}" if scaling is not None
                 else str(model.vllm.fixed_replicas))
        text += f" ({count}x{model.vllm.gpu.count} {model.vllm.gpu.type or 'GPU'})"
    return text


def describe_layers(stack: AIStack) -> list[str]:
    spec = stack.spec
    layers = []
    if spec.retrieval:
        layers.append(f"retrieval ({spec.retrieval.embedder.dimension}d)")
    orch = spec.orchestration
    layers.append(f"agent ({len(orch.tools)} tools)" if orch.mode == "agent" else "pipeline")
    if spec.guardrails:
        layers.append(f"guardrails ({len(spec.guardrails.input)} in/{len(spec.guardrails.output)} out)")
    if spec.observability:
        layers.append("tracing")
    if spec.evaluation:
        layers.append(f"eval ({len(spec.evaluation.thresholds)} gates)")
    return layers


app.command("init-gitops")(gitops.init_gitops_cmd)
app.command("promote")(promote.promote_cmd)

from aistack.cli.engine import engine_app  # noqa: E402  (light: heavy imports live inside the commands)
from aistack.cli.collection import collection_cmd  # noqa: E402
from aistack.cli.eval import eval_cmd  # noqa: E402
from aistack.cli.ingest import ingest_cmd  # noqa: E402
from aistack.cli.ui import ui_cmd  # noqa: E402
from aistack.cli.up import up_cmd  # noqa: E402

app.command("ingest")(ingest_cmd)
app.command("collection")(collection_cmd)
app.command("eval")(eval_cmd)
app.command("up")(up_cmd)
app.command("ui")(ui_cmd)
app.add_typer(engine_app, name="engine")


def main() -> None:
    app()
