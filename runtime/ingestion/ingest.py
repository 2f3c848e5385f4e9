"""One ingestion, as `aistack ingest` runs it (on a laptop or in the ingestion Job): open the
stack's store, load its embedder, list the targets, ingest them.

The caller resolves what to ingest into an `IngestionPlan` (`aistack.runtime.local.commands`
does it from the manifest, the flags and the state folder), shows progress through an
`IngestionProgress`, and turns the `IngestionResult` into an exit code
(`aistack.api.commands.IngestExit`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aistack.api.gateway_config import RetrievalConfig
from aistack.api.v1alpha1 import AIStack
from aistack.runtime.ingestion.pipeline import IngestionError, IngestReport, Ingestor
from aistack.runtime.ingestion.sources import Target

OnFile = Callable[[str, str], None]
"""Called as each file is done, with its source and what happened to it (`new`, `pruned`, ...)."""


class IngestionUnavailable(RuntimeError):
    """Nothing could be ingested (bad manifest or flags, the store busy or unavailable, the
    embedder failing); the message says what to do. `aistack ingest` prints it and exits
    `IngestExit.UNAVAILABLE`."""


@dataclass(frozen=True, kw_only=True)
class IngestionPlan:
    """What to ingest where, resolved."""

    stack: AIStack
    config: RetrievalConfig
    """The stack's retrieval wired to the store this run writes to."""
    targets: list[Target]
    base: Path
    """The folder relative source paths start from (documents are named relative to it)."""
    prune: bool
    max_file_bytes: int | None = None
    """Files bigger than this are skipped unread (`retrieval.maxFileSize`, `--max-file-size`)."""


@dataclass(frozen=True, kw_only=True)
class IngestionResult:
    report: IngestReport
    collection: str


class IngestionProgress(Protocol):
    """How the caller shows an ingestion (`aistack ingest`: stage lines, then a bar on a terminal)."""

    def begin(self, text: str) -> None:
        """A slow stage starts (and the previous one ends)."""

    def files(self, total: int) -> AbstractContextManager[OnFile]:
        """While the listed files are ingested."""

    def working(self, source: str, text: str) -> None:
        """A large file is being read or embedded (`embedded 2048 of 60000 chunks`)."""


async def ingest(plan: IngestionPlan, *, progress: IngestionProgress) -> IngestionResult:
    """Raises IngestionUnavailable when the store or the embedder fails; what was written stays."""
    from aistack.runtime.retrieval.embedders import EmbeddingError, build_embedder
    from aistack.runtime.retrieval.factory import collection_spec, open_store
    from aistack.runtime.retrieval.store import StoreError

    config = plan.config
    on_file: OnFile = _ignore

    def report_file(source: str, status: str) -> None:
        on_file(source, status)

    try:
        store = open_store(config, spec=collection_spec(config, stack=plan.stack))
        try:
            progress.begin(f"loading the embedder ({config.embedder.model})")
            embedder = await asyncio.to_thread(build_embedder, config.embedder)
            progress.begin("listing " + ", ".join(t.uri for t in plan.targets))
            ingestor = Ingestor(store=store, embedder=embedder, chunking=config.chunking, base=plan.base,
                                max_file_bytes=plan.max_file_bytes, on_progress=report_file,
                                on_working=progress.working)
            listings = await asyncio.to_thread(ingestor.list, plan.targets)
            with progress.files(sum(len(x.files) for x in listings)) as on_file:
                report = await ingestor.ingest(listings, prune=plan.prune)
        finally:
            await store.close()
    except (IngestionError, StoreError, EmbeddingError) as exc:
        raise IngestionUnavailable(f"ingest failed, nothing more was written: {exc}") from exc
    return IngestionResult(report=report, collection=config.collection)


def _ignore(source: str, status: str) -> None:
    return None
