"""Ingestion: list, diff against what is stored, parse, chunk, embed, write, prune.

Idempotent by content hash: an unchanged file costs a read and a hash, and writes nothing. A
changed file's new chunks are written *before* its old ones are deleted (chunk 0, which marks
a stored version, last), so a crash or an embedding failure leaves the old version searchable.
A file that cannot be read or parsed is reported and skipped; what was stored for it stays.
One the parser read with warnings (a damaged PDF it repaired) is written and noted once. A file
the listing refused (a link out of its source folder, over the size cap) is reported the same
way, unread. A large file reports its progress while it is parsed and embedded (`on_working`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aistack.api.collection import CHUNK_INDEX, CONTENT_HASH, SOURCE, TEXT, TITLE
from aistack.api.v1alpha1.retrieval import Chunking
from aistack.runtime.ingestion.chunking import Chunk, chunk_document
from aistack.runtime.ingestion.documents import DocumentError, parse_document, warnings_note
from aistack.runtime.ingestion.sources import Listing, SourceFile, Target, format_size, list_target
from aistack.runtime.retrieval.contracts import Embedder
from aistack.runtime.retrieval.store import StoredPoint, VectorStore

_ID_NAMESPACE = uuid.UUID("5b0e8f43-52a5-4c38-9a39-4d2f6a1f3c11")
EMBED_BATCH_CHUNKS = 256
LARGE_FILE_BYTES = 1024 * 1024
"""A file this big says what it is doing while it is parsed (`on_working`)."""


@dataclass
class IngestReport:
    files: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    empty: int = 0
    pruned: int = 0
    chunks_written: int = 0
    ignored: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    """(source, note) for files read despite parser warnings (a repaired PDF): written, but worth a look."""
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def written_documents(self) -> int:
        return self.new + self.changed


@dataclass
class _Pending:
    file: SourceFile
    content_hash: str
    title: str
    chunks: list[Chunk]
    replaces: bool


class IngestionError(RuntimeError):
    """Ingestion cannot go on (e.g. bad arguments); nothing was written."""


def point_id(*, tenant: str | None, source: str, content_hash: str, index: int) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{tenant or ''}\x1f{source}\x1f{content_hash}\x1f{index}"))


class Ingestor:
    """Ingests targets into one collection with one embedder."""

    def __init__(self, *, store: VectorStore, embedder: Embedder, chunking: Chunking, base: Path,
                 max_file_bytes: int | None = None,
                 on_progress: Callable[[str, str], None] | None = None,
                 on_working: Callable[[str, str], None] | None = None) -> None:
        """`on_progress(source, status)`: a file is done (`new`, `unchanged`, `error`, `pruned`...);
        `on_working(source, text)`: a large file is being parsed or embedded (`embedded 2048 of
        60000 chunks`), every tenth of its chunks."""
        self.store = store
        self.embedder = embedder
        self.chunking = chunking
        self.base = base
        self.max_file_bytes = max_file_bytes
        self._progress = on_progress or (lambda source, status: None)
        self._working = on_working or (lambda source, text: None)

    def list(self, targets: Sequence[Target]) -> list[Listing]:
        """The listings of `targets` (blocking I/O; run before `ingest` to size a progress bar)."""
        if any(t.tenant is not None for t in targets) and self.store.spec.tenant_field is None:
            raise IngestionError(
                "a tenant was given but the stack declares no retrieval.tenantField: "
                "add `tenantField: tenant` to the manifest so searches can be isolated by tenant"
            )
        return [list_target(t, base=self.base, max_bytes=self.max_file_bytes) for t in targets]

    async def ingest(self, listings: Sequence[Listing], *, prune: bool = False) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        await self.store.ensure_collection()
        stored: dict[tuple[str | None, str], set[str]] = {}
        for record in await self.store.documents():
            stored.setdefault((record.tenant, record.source), set()).add(record.content_hash)
        seen: set[tuple[str | None, str]] = set()
        pending: list[_Pending] = []
        for listing in listings:
            report.ignored += listing.ignored
            if listing.error:
                report.errors.append((listing.target.uri, listing.error))
                continue
            for source, reason in listing.skipped:
                report.errors.append((source, reason))
                self._progress(source, "skipped")
            for file in listing.files:
                report.files += 1
                key = (file.tenant, file.source)
                seen.add(key)
                item = await asyncio.to_thread(self._prepare, file, stored.get(key, set()), report)
                if item is None:
                    continue
                if item.chunks:
                    pending.append(item)
                    if sum(len(p.chunks) for p in pending) >= EMBED_BATCH_CHUNKS:
                        await self._write(pending, report)
                        pending = []
                else:  # a readable document with no text left: its old chunks go
                    await self.store.delete_document(source=file.source, tenant=file.tenant)
                    report.empty += 1
                    self._progress(file.source, "empty")
        await self._write(pending, report)
        if prune:
            for listing in listings:
                if listing.error:
                    continue  # a failed listing shows nothing; pruning on it would delete everything
                tenant = listing.target.tenant
                for tenant_key, source in sorted(stored, key=lambda k: (k[0] or "", k[1])):
                    if tenant_key == tenant and (tenant_key, source) not in seen and listing.covers(source):
                        await self.store.delete_document(source=source, tenant=tenant)
                        seen.add((tenant_key, source))
                        report.pruned += 1
                        self._progress(source, "pruned")
        if report.chunks_written or report.pruned or report.empty:
            await self.store.optimize()
        report.seconds = time.perf_counter() - started
        return report

    def _prepare(self, file: SourceFile, stored_hashes: set[str], report: IngestReport) -> _Pending | None:
        if file.size is not None and file.size >= LARGE_FILE_BYTES:
            self._working(file.source, f"reading {format_size(file.size)}")
        try:
            data = file.read()
        except Exception as exc:  # OSError locally, botocore errors for S3: report, never abort
            report.errors.append((file.source, f"cannot read: {exc}"))
            self._progress(file.source, "error")
            return None
        content_hash = hashlib.sha256(data).hexdigest()[:32]
        if stored_hashes == {content_hash}:
            report.unchanged += 1
            self._progress(file.source, "unchanged")
            return None
        try:
            document = parse_document(data, name=file.source)
        except DocumentError as exc:
            report.errors.append((file.source, str(exc)))
            self._progress(file.source, "error")
            return None
        if document.warnings:
            report.warnings.append((file.source, warnings_note(document, name=file.source)))
        chunks = [] if document.empty else chunk_document(document, size=self.chunking.size,
                                                          overlap=self.chunking.overlap,
                                                          meter=self.embedder.token_meter)
        return _Pending(file=file, content_hash=content_hash, title=document.title, chunks=chunks,
                        replaces=bool(stored_hashes))

    async def _write(self, pending: Sequence[_Pending], report: IngestReport) -> None:
        if not pending:
            return
        texts = [chunk.text for item in pending for chunk in item.chunks]
        t0 = time.perf_counter()
        vectors = await _embed(self.embedder, texts, pending, self._working)
        report.embed_seconds += time.perf_counter() - t0
        tenant_key = self.store.spec.tenant_key
        offset = 0
        for item in pending:
            points = []
            for index, chunk in enumerate(item.chunks):
                payload: dict[str, object] = {
                    TEXT: chunk.text, SOURCE: item.file.source, TITLE: item.title, CHUNK_INDEX: index,
                    "chunk_count": len(item.chunks), "heading": chunk.heading,
                    CONTENT_HASH: item.content_hash,
                }
                if item.file.tenant is not None:
                    payload[tenant_key] = item.file.tenant
                points.append(StoredPoint(point_id(tenant=item.file.tenant, source=item.file.source,
                                                   content_hash=item.content_hash, index=index),
                                          vectors[offset + index], payload))
            offset += len(item.chunks)
            await self.store.upsert(points[1:])
            await self.store.upsert(points[:1])  # chunk 0 last: it marks the version as stored
            await self.store.delete_document(source=item.file.source, tenant=item.file.tenant,
                                             keep_hash=item.content_hash)
            report.chunks_written += len(points)
            if item.replaces:
                report.changed += 1
                self._progress(item.file.source, "changed")
            else:
                report.new += 1
                self._progress(item.file.source, "new")


async def _embed(embedder: Embedder, texts: list[str], pending: Sequence[_Pending],
                 working: Callable[[str, str], None]) -> list[list[float]]:
    """All texts' vectors, `EMBED_BATCH_CHUNKS` at a time, saying how far a file of more chunks
    than that has got (each tenth of it)."""
    large = [(item, sum(len(p.chunks) for p in pending[:i]))
             for i, item in enumerate(pending) if len(item.chunks) > EMBED_BATCH_CHUNKS]
    told: dict[str, int] = {}
    vectors: list[list[float]] = []
    for start in range(0, len(texts), EMBED_BATCH_CHUNKS):
        vectors += await embedder.embed(texts[start:start + EMBED_BATCH_CHUNKS])
        for item, offset in large:
            total = len(item.chunks)
            done = min(max(len(vectors) - offset, 0), total)
            tenth = done * 10 // total
            if done and tenth > told.get(item.file.source, -1):
                told[item.file.source] = tenth
                working(item.file.source, f"embedded {done} of {total} chunks")
    return vectors
