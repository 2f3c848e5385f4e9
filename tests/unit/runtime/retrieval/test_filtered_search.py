"""A tenant-filtered search asks both engines for the wider HNSW beam (`TENANT_SEARCH_EF`): with
Qdrant's default beam a tenant's recall@10 fell to 0.76 at 300k points (`bench/retrieval.py`
shows the numbers; no timing here). An unfiltered search keeps the engine's default."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aistack.api.collection import TENANT_SEARCH_EF, CollectionSpec
from aistack.runtime.retrieval.edge import EdgeStore
from aistack.runtime.retrieval.qdrant_server import QdrantClientStore
from aistack.runtime.retrieval.store import StoredPoint

TENANTS = CollectionSpec(name="kb", dimension=4, tenant_field="tenant")
SHARED = CollectionSpec(name="kb", dimension=4)
POINTS = [StoredPoint(f"00000000-0000-0000-0000-00000000000{i}", [1.0, float(i), 0.0, 0.0],
                      {"text": f"t{i}", "source": "a.md", "chunk_index": i, "content_hash": "h",
                       "tenant": "a" if i % 2 else "b"}) for i in range(1, 5)]


class Recorder:
    """Forwards every call to the real object, keeping the `query` requests it saw."""

    def __init__(self, real: Any, method: str) -> None:
        self.real, self.method, self.calls = real, method, []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.real, name)
        if name != self.method:
            return attr

        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((args, kwargs))
            return attr(*args, **kwargs)

        return record


def test_the_embedded_engine_searches_a_tenant_with_the_wide_beam(tmp_path: Path) -> None:
    async def run(spec: CollectionSpec, folder: Path) -> tuple[list[Any], int]:
        store = EdgeStore(spec=spec, path=folder)
        await store.ensure_collection()
        await store.upsert(POINTS)
        shard = Recorder(store._open(), "query")
        store._shard = shard  # type: ignore[assignment]
        hits = store.search_sync([1.0, 1.0, 0.0, 0.0], limit=10, tenant="a")
        store._shard = shard.real
        await store.close()
        return [args[0].params for args, _ in shard.calls], len(hits)

    [params], hits = asyncio.run(run(TENANTS, tmp_path / "tenants"))
    assert params is not None and params.hnsw_ef == TENANT_SEARCH_EF and hits == 2
    [params], hits = asyncio.run(run(SHARED, tmp_path / "shared"))
    assert params is None and hits == 4


def test_a_qdrant_server_is_asked_for_the_wide_beam_on_a_tenant_filter() -> None:
    async def run(spec: CollectionSpec) -> tuple[Any, int]:
        store = QdrantClientStore(spec=spec)
        await store.ensure_collection()
        await store.upsert(POINTS)
        client = Recorder(store._client, "query_points")
        store._client = client  # type: ignore[assignment]
        hits = await store.search([1.0, 1.0, 0.0, 0.0], limit=10, tenant="b")
        store._client = client.real
        await store.close()
        [(_, kwargs)] = client.calls
        return kwargs["search_params"], len(hits)

    params, hits = asyncio.run(run(TENANTS))
    assert params is not None and params.hnsw_ef == TENANT_SEARCH_EF and hits == 2
    params, hits = asyncio.run(run(SHARED))
    assert params is None and hits == 4
