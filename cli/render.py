"""`aistack render FILE`: print the Kubernetes objects the operator would apply (like
`helm template`), for review and GitOps. Pure: reads the file, touches no cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aistack.api import yamlio
from aistack.api.manifests import load_stack


def manifests_yaml(manifests: list[dict[str, Any]]) -> str:
    """A multi-document YAML stream, keys in rendered order; rendered config files as `|`
    blocks, so a diff reads like the file."""
    return yamlio.dump_all(manifests, blocks=True)


def render_yaml(path: Path, *, version: str | None = None) -> tuple[str, list[str]]:
    """The rendered children of the one AIStack in `path`, and warnings for the reviewer:
    what the manifest declares that the cluster will not do (a path source with no volume)."""
    from aistack.operator.render import render

    rendered = render(load_stack(path), version=version)
    warnings = [f"retrieval.sources: {uri!r} is a path with no volume: `aistack ingest` reads it, "
                "the cluster's ingestion Job does not" for uri in rendered.local_only_sources]
    return manifests_yaml(rendered.manifests), warnings
