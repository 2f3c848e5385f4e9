from __future__ import annotations

import uuid
from pathlib import Path

from aistack.api.gateway_config import EmbedderConfig, RetrievalConfig
from aistack.runtime.retrieval import build_retriever
from aistack.runtime.retrieval.contracts import Retriever
from aistack.runtime.retrieval.embedders import LocalEmbedder
from aistack.runtime.retrieval.store import StoredPoint

DOCS = [
    ("Qdrant stores the vectors of every chunk.", "store.md", "acme"),
    ("Guardrails block jailbreak attempts before the model sees them.", "rails.md", None),
    ("MLflow records an evaluation run for each release.", "mlops.md", "globex"),
]


async def test_retriever_embeds_filters_by_tenant_and_returns_citable_passages(tmp_path: Path,
                                                                               minilm: LocalEmbedder) -> None:
    config = RetrievalConfig(
        qdrant_path=str(tmp_path), collection="docs", distance="Cosine", tenant_field="tenant",
        embedder=EmbedderConfig(provider="local", model="all-MiniLM-L6-v2", dimension=384),
        top_k=3, score_threshold=0.1, max_context_tokens=200,
    )
    retriever = build_retriever(config)
    assert isinstance(retriever, Retriever)
    await retriever.store.ensure_collection()
    vectors = await minilm.embed([d[0] for d in DOCS])
    await retriever.store.upsert([
        StoredPoint(str(uuid.uuid4()), v, {"text": t, "source": s, "title": s[:-3], "chunk_index": 0,
                                           "content_hash": "h", **({"tenant": ten} if ten else {})})
        for (t, s, ten), v in zip(DOCS, vectors, strict=True)
    ])
    assert await retriever.ready()
    hits = await retriever.search("where are vectors stored?", tenant="acme")
    assert hits[0].source == "store.md" and hits[0].title == "store" and hits[0].chunk_index == 0
    assert {h.source for h in hits} <= {"store.md", "rails.md"}
    assert all(h.score >= 0.1 for h in hits)
    assert "tenant" not in {h.source for h in hits}
    anonymous = await retriever.search("what do guardrails block?", tenant=None)
    assert [h.source for h in anonymous] == ["rails.md"]
    assert await retriever.search("   ", tenant="acme") == []
    await retriever.close()
