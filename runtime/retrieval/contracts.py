"""Interfaces between the gateway and the retrieval layer.

The gateway (orchestration, `/v1/embeddings`) depends only on these protocols; the
retrieval package provides the Qdrant/embedding implementations. Tests and the local
runner can plug in any object that satisfies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from aistack.runtime.retrieval.tokens import TokenMeter


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk, with what a citation needs."""

    text: str
    source: str
    score: float
    title: str | None = None
    chunk_index: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors (batched); used for ingestion, queries and /v1/embeddings."""

    @property
    def model(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def token_meter(self) -> TokenMeter:
        """How the embedder counts text and how many tokens of a text it reads (chunks fit in it)."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


@runtime_checkable
class Retriever(Protocol):
    """Searches the stack's collection on behalf of one caller.

    `tenant` is the caller's tenant (from the API key or the tenant header) or None; when the
    stack declares a tenant field, an implementation must filter by it and return nothing
    tenant-scoped for None.
    """

    async def search(self, query: str, *, tenant: str | None, top_k: int | None = None) -> list[Passage]: ...

    async def ready(self) -> bool: ...
