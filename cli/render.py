"""`aistack render FILE`: print the Kubernetes objects the operator would apply (like
`helm template`), for review and GitOps. Pure: reads the file, touches no cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from aistack.api import yamlio
from aistack.api.manifests import load_stack
from aistack.api.v1alpha1 import AIStack


def manifests_yaml(manifests: list[dict[str, Any]]) -> str:
    """A multi-document YAML stream, keys in rendered order; rendered config files as `|`
    blocks, so a diff reads like the file."""
    return yamlio.dump_all(manifests, blocks=True)


STDIN = "-"


def read_input(path: Path) -> tuple[str, str | None]:
    """How a FILE argument is named in messages, and its text when it is `-` (standard input,
    for `kubectl kustomize DIR | aistack validate -`); None: read the file itself."""
    if str(path) == STDIN:
        return "<stdin>", sys.stdin.read()
    return str(path), None


def render_yaml(path: Path, *, version: str | None = None) -> tuple[str, list[str]]:
    """The rendered children of the one AIStack in `path` (`-`: standard input), and warnings for
    the reviewer: what the manifest declares that the cluster will not do (a path source with no
    volume)."""
    from aistack.operator.render import render

    name, text = read_input(path)
    rendered = render(load_stack(name, text=text), version=version)
    warnings = [f"retrieval.sources: {uri!r} is a path with no volume: `aistack ingest` reads it, "
                "the cluster's ingestion Job does not" for uri in rendered.local_only_sources]
    return manifests_yaml(rendered.manifests), warnings + canary_warnings(rendered.stack)


def canary_warnings(stack: AIStack) -> list[str]:
    """What a canary's analysis declares that the cluster will not judge it on: the evaluation
    metrics need `evaluation` on a ConfigMap dataset (the only one its evaluation Job can mount)."""
    canary = stack.spec.model.canary
    analysis = canary.analysis if canary is not None else None
    if analysis is None:
        return []
    evaluation = stack.spec.evaluation
    if evaluation is not None and evaluation.dataset.config_map_key_ref is None:
        return [("model.canary.analysis: the cluster judges the canary on the gateways' numbers only: "
                 "evaluation.dataset is a path, which its evaluation Job cannot mount (use configMapKeyRef; "
                 "`aistack eval --compare-stable` compares the versions from here)")]
    if evaluation is None and "max_evaluation_regression" in analysis.model_fields_set:
        return [("model.canary.analysis.maxEvaluationRegression does nothing: the stack declares no "
                 "evaluation to compare the versions on")]
    return []


def stack_config_hash(path: Path) -> str:
    """The config hash of the one AIStack in `path` (`-`: standard input): what `aistack eval`
    tags its runs with and `aistack promote` looks for, for runs logged by other means."""
    from aistack.api.config_hash import config_hash

    name, text = read_input(path)
    return config_hash(load_stack(name, text=text).spec)
