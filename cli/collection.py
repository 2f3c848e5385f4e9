"""`aistack collection STACK.yaml`: create or check the stack's collection on its Qdrant.

The collection step of a stack on an external Qdrant with an API key. It runs where the key is
mounted (the collection Job, or a machine with `AISTACK_SECRET_<NAME>_<KEY>` set), so the
operator never reads a Secret; the operator reads the Job's exit code (`CollectionExit`). It
does what the operator does for a Qdrant it can reach without a key (`ensure_collection()`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from aistack.api.commands import CollectionExit

err = Console(stderr=True, highlight=False, soft_wrap=True)


def collection_cmd(
    manifest: Annotated[Path, typer.Argument(help="The AIStack manifest.", show_default=False)],
) -> None:
    """Create the stack's collection on its external Qdrant, or check the one there.

    Exit code 0: the collection is as the spec says (created, or missing payload indexes
    added); 1: it holds other vectors and is left untouched; 2: Qdrant is unreachable, the key
    is missing or refused, or the manifest has no external Qdrant.
    """
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    from aistack.api.manifests import ManifestError, load_stack
    from aistack.operator.collection import default_qdrant_factory, ensure_collection

    try:
        stack = load_stack(manifest)
    except ManifestError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(CollectionExit.UNAVAILABLE) from None
    retrieval = stack.spec.retrieval
    external = retrieval.vector_store.external if retrieval is not None else None
    if external is None:
        err.print(f"{manifest}: spec.retrieval.vectorStore.external: the stack has no external Qdrant "
                  "(the operator manages the collection of its own Qdrant)", markup=False)
        raise typer.Exit(CollectionExit.UNAVAILABLE)
    key = None
    ref = external.api_key_secret_ref
    if ref is not None:
        key = os.environ.get(ref.env_name())
        if not key:
            err.print(f"{ref.env_name()} is not set: the key of Secret {ref.name!r} (key {ref.key!r}) is "
                      "read from it", markup=False)
            raise typer.Exit(CollectionExit.UNAVAILABLE)
    url = str(external.url).rstrip("/")
    client = default_qdrant_factory(url, key)
    try:
        check = ensure_collection(client, stack)
    except (ResponseHandlingException, UnexpectedResponse, OSError) as exc:
        err.print(f"Qdrant at {url}: {exc}", markup=False)
        raise typer.Exit(CollectionExit.UNAVAILABLE) from None
    finally:
        client.close()
    err.print(f"{check.reason}: {check.message}", markup=False)
    if not check.ok:
        raise typer.Exit(CollectionExit.MISMATCH)
