"""The gateway's `Retriever`: embed the question, search the tenant's chunks, fit the budget."""

from __future__ import annotations

from aistack.api.collection import CHUNK_INDEX, SOURCE, TEXT, TITLE
from aistack.runtime.retrieval.context import fit_to_budget
from aistack.runtime.retrieval.contracts import Embedder, Passage
from aistack.runtime.retrieval.store import Hit, VectorStore

_PAYLOAD_KEYS = {TEXT, SOURCE, TITLE, CHUNK_INDEX}


def to_passage(hit: Hit) -> Passage:
    payload = hit.payload
    metadata = {k: v for k, v in payload.items() if k not in _PAYLOAD_KEYS}
    metadata["id"] = hit.id
    return Passage(text=str(payload.get(TEXT, "")), source=str(payload.get(SOURCE, "")), score=hit.score,
                   title=payload.get(TITLE), chunk_index=payload.get(CHUNK_INDEX), metadata=metadata)


class QdrantRetriever:
    """Top-k search with a score threshold, then the best passages that fit `max_context_tokens`.

    `tenant` must come from the authenticated caller (the gateway resolves API key and header);
    the store applies the tenant filter, so no caller of this class can forget it.
    """

    def __init__(self, *, embedder: Embedder, store: VectorStore, top_k: int = 4,
                 score_threshold: float | None = None, max_context_tokens: int = 2000) -> None:
        self.embedder = embedder
        self.store = store
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.max_context_tokens = max_context_tokens

    async def search(self, query: str, *, tenant: str | None, top_k: int | None = None) -> list[Passage]:
        if not query.strip():
            return []
        [vector] = await self.embedder.embed([query])
        hits = await self.store.search(vector, limit=top_k or self.top_k, tenant=tenant,
                                       score_threshold=self.score_threshold)
        return fit_to_budget([to_passage(h) for h in hits], max_tokens=self.max_context_tokens)

    async def ready(self) -> bool:
        return await self.store.ready()

    async def close(self) -> None:
        await self.store.close()



