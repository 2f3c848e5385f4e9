"""The vector store seen by retrieval and ingestion: one collection, tenant-aware.

Two engines sit behind `VectorStore`: a Qdrant server through qdrant-client (managed by the
operator or external), and Qdrant's engine in-process through qdrant-edge-py for embedded
local runs (qdrant-client's own local mode is a numpy brute force: ~0.2-0.8 s per search at
100k points, see bench/retrieval.py; qdrant-edge answers in milliseconds).

Tenant isolation lives here, not in callers: when the collection has a tenant field, every
search is filtered. A caller with tenant T sees T's chunks and shared chunks (no tenant); a
caller without a tenant sees shared chunks only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aistack.api.collection import CollectionSpec


class StoreError(RuntimeError):
    """The vector store failed or does not match the spec; the message says what to do."""


@dataclass(frozen=True)
class StoredPoint:
    id: str
    vector: list[float]
    payload: dict[str, Any]


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True)
class DocumentRecord:
    """One stored document version, as ingestion needs it to decide what to write."""

    source: str
    tenant: str | None
    content_hash: str


class VectorStore(Protocol):
    """One collection; every method is safe to call from the event loop."""

    spec: CollectionSpec
    engine: str

    async def ensure_collection(self) -> bool:
        """Create the collection and its payload indexes if missing (True when created);
        refuse a collection whose vector size or distance differs from the spec."""
        ...

    async def upsert(self, points: list[StoredPoint]) -> None: ...

    async def delete_document(self, *, source: str, tenant: str | None, keep_hash: str | None = None) -> None:
        """Delete a document's chunks, except those of version `keep_hash`."""
        ...

    async def documents(self) -> list[DocumentRecord]:
        """Every stored document version (one record per source, tenant and hash)."""
        ...

    async def search(self, vector: list[float], *, limit: int, tenant: str | None,
                     score_threshold: float | None = None) -> list[Hit]:
        """Nearest chunks visible to `tenant` (see the module docstring for who sees what)."""
        ...

    async def optimize(self) -> None:
        """Build search indexes after a bulk write (a no-op where the server does it)."""
        ...

    async def count(self) -> int: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...
