"""Both embedded engines behind `VectorStore` behave the same, tenant isolation first."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aistack.api.collection import CollectionSpec
from aistack.runtime.retrieval.edge import EdgeStore, open_edge_shard
from aistack.runtime.retrieval.qdrant_server import QdrantClientStore
from aistack.runtime.retrieval.store import StoredPoint, StoreError, VectorStore

SPEC = CollectionSpec(name="docs", dimension=4, tenant_field="tenant", payload_indexes=(("lang", "keyword"),))


def point(text: str, vector: list[float], *, source: str, tenant: str | None = None, h: str = "h1",
          index: int = 0) -> StoredPoint:
    payload = {"text": text, "source": source, "chunk_index": index, "content_hash": h}
    if tenant is not None:
        payload["tenant"] = tenant
    return StoredPoint(str(uuid.uuid4()), vector, payload)


@pytest.fixture(params=["qdrant-edge", "qdrant-client-local"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    s: VectorStore = EdgeStore(
        spec=SPEC, path=tmp_path) if request.param == "qdrant-edge" else QdrantClientStore(spec=SPEC)
    assert await s.ensure_collection() is True
    assert await s.ensure_collection() is False
    await s.upsert([
        point("acme secret", [1, 0, 0, 0], source="a.md", tenant="acme"),
        point("globex secret", [0.99, 0.01, 0, 0], source="g.md", tenant="globex"),
        point("shared handbook", [0.5, 0.5, 0, 0], source="shared.md"),
    ])
    yield s
    await s.close()


async def texts(store: VectorStore, tenant: str | None, **kw: object) -> list[str]:
    return [h.payload["text"] for h in await store.search([1, 0, 0, 0], limit=10, tenant=tenant, **kw)]


async def test_a_tenant_sees_its_own_and_shared_chunks_never_another_tenants(store: VectorStore) -> None:
    assert await texts(store, "acme") == ["acme secret", "shared handbook"]
    assert await texts(store, "globex") == ["globex secret", "shared handbook"]
    assert await texts(store, "initech") == ["shared handbook"]


async def test_a_caller_without_tenant_sees_nothing_tenant_scoped(store: VectorStore) -> None:
    assert await texts(store, None) == ["shared handbook"]


async def test_a_collection_without_tenant_field_is_not_filtered(tmp_path: Path) -> None:
    spec = CollectionSpec(name="open", dimension=4)
    store = EdgeStore(spec=spec, path=tmp_path)
    await store.ensure_collection()
    await store.upsert([point("x", [1, 0, 0, 0], source="x.md", tenant="acme"),
                        point("y", [0, 1, 0, 0], source="y.md")])
    assert len(await store.search([1, 0, 0, 0], limit=10, tenant=None)) == 2
    await store.close()


async def test_score_threshold_drops_weak_hits(store: VectorStore) -> None:
    assert await texts(store, "acme", score_threshold=0.9) == ["acme secret"]


async def test_documents_and_versioned_deletes(store: VectorStore) -> None:
    await store.upsert([point("acme v2", [1, 0, 0, 0], source="a.md", tenant="acme", h="h2", index=0)])
    docs = sorted((d.source, d.tenant, d.content_hash) for d in await store.documents())
    assert docs == [("a.md", "acme", "h1"), ("a.md", "acme", "h2"), ("g.md", "globex", "h1"),
                    ("shared.md", None, "h1")]
    await store.delete_document(source="a.md", tenant="acme", keep_hash="h2")
    assert await texts(store, "acme") == ["acme v2", "shared handbook"]
    await store.delete_document(source="a.md", tenant="globex")  # another tenant's name: nothing happens
    assert await store.count() == 3
    await store.delete_document(source="shared.md", tenant=None)
    assert await texts(store, None) == []


async def test_edge_store_keeps_data_across_reopen_and_refuses_another_dimension(tmp_path: Path) -> None:
    store = EdgeStore(spec=SPEC, path=tmp_path)
    await store.ensure_collection()
    await store.upsert([point("kept", [1, 0, 0, 0], source="k.md")])
    await store.optimize()
    await store.close()
    again = EdgeStore(spec=SPEC, path=tmp_path)
    assert await again.ensure_collection() is False
    assert await texts(again, None) == ["kept"]
    await again.close()
    wrong = EdgeStore(spec=CollectionSpec(name="docs", dimension=8), path=tmp_path)
    with pytest.raises(StoreError, match="does not fit the embedder.*8-d"):
        await wrong.ensure_collection()


async def test_edge_shard_is_shared_in_process_and_locked_against_other_processes(tmp_path: Path) -> None:
    import subprocess
    import sys

    store = EdgeStore(spec=SPEC, path=tmp_path)
    await store.ensure_collection()
    shard, created = open_edge_shard(tmp_path / "docs", SPEC)
    assert created is False
    code = (
        "import sys; from pathlib import Path\n"
        "from aistack.runtime.retrieval.edge import open_edge_shard\n"
        "from aistack.api.collection import CollectionSpec\n"
        "from aistack.runtime.retrieval.store import StoreError\n"
        "try:\n    open_edge_shard(Path(sys.argv[1]), CollectionSpec(name='docs', dimension=4))\n"
        "except StoreError as e:\n    print(e); sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "docs")], capture_output=True,
                            text=True,
                            timeout=60)
    assert result.returncode == 3, result.stderr
    assert "open in another process" in result.stdout
    await store.close()
