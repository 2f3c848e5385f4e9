"""`VectorStore` on qdrant-client: a Qdrant server (URL), or qdrant-client's local mode.

The local mode (`path=` or `:memory:`) is pure Python; it suits tests and small stores, and
bench/retrieval.py measures it beside the in-process engine (`edge.py`).
"""

from __future__ import annotations

from typing import Any

from qdrant_client import AsyncQdrantClient, models

from aistack.api.collection import (
    CHUNK_INDEX,
    CONTENT_HASH,
    SOURCE,
    TENANT_SEARCH_EF,
    CollectionSpec,
    PayloadIndexSpec,
)
from aistack.runtime.retrieval.store import DocumentRecord, Hit, StoredPoint, StoreError

_SCHEMA = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "bool": models.PayloadSchemaType.BOOL,
    "datetime": models.PayloadSchemaType.DATETIME,
    "text": models.PayloadSchemaType.TEXT,
    "uuid": models.PayloadSchemaType.UUID,
}


def payload_schema(index: PayloadIndexSpec) -> Any:
    """qdrant-client's schema of one index (the tenant one marked `is_tenant`)."""
    if index.tenant:
        return models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
    return _SCHEMA[index.type]


def tenant_filter(spec: CollectionSpec, tenant: str | None) -> models.Filter | None:
    """The filter every search carries: own chunks plus shared ones, or shared ones only."""
    if spec.tenant_field is None:
        return None
    key = spec.tenant_field
    if tenant is None:
        return models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key=key))])
    return models.Filter(should=[
        models.FieldCondition(key=key, match=models.MatchValue(value=tenant)),
        models.IsEmptyCondition(is_empty=models.PayloadField(key=key)),
    ])


def _owner(spec: CollectionSpec, tenant: str | None) -> Any:
    key = spec.tenant_key
    if tenant is None:
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=key))
    return models.FieldCondition(key=key, match=models.MatchValue(value=tenant))


class QdrantClientStore:
    """A collection on a Qdrant server, or in qdrant-client's local mode."""

    def __init__(self, *, spec: CollectionSpec, url: str | None = None, path: str | None = None,
                 api_key: str | None = None, timeout_seconds: int = 30) -> None:
        self.spec = spec
        if url:
            self.engine = "qdrant-server"
            self._client = AsyncQdrantClient(url=url, api_key=api_key, timeout=timeout_seconds)
        else:
            self.engine = "qdrant-client-local"
            self._client = AsyncQdrantClient(path=path) if path else AsyncQdrantClient(location=":memory:")
        self._where = url or path or ":memory:"

    async def ensure_collection(self) -> bool:
        name = self.spec.name
        try:
            exists = await self._client.collection_exists(name)
        except Exception as exc:  # network errors come in many types from httpx/grpc
            raise StoreError(f"Qdrant at {self._where} is unreachable ({exc!r}); is it running?") from exc
        if exists:
            info = await self._client.get_collection(name)
            params = info.config.params.vectors
            if isinstance(params, models.VectorParams):
                size, distance = params.size, params.distance.value
                if size != self.spec.dimension or distance != self.spec.distance:
                    raise StoreError(
                        f"collection {name!r} holds {size}-d {distance} vectors but the embedder gives "
                        f"{self.spec.dimension}-d {self.spec.distance}: use a new collection name, or delete "
                        "the collection and re-ingest"
                    )
            created = False
        else:
            await self._client.create_collection(
                name, vectors_config=models.VectorParams(
                    size=self.spec.dimension, distance=models.Distance(self.spec.distance)),
            )
            created = True
        await self._ensure_indexes()
        return created

    async def _ensure_indexes(self) -> None:
        if self.engine != "qdrant-server":
            return  # qdrant-client's local mode has no payload indexes (it scans)
        info = await self._client.get_collection(self.spec.name)
        have = set(info.payload_schema or {})
        for index in self.spec.indexes():
            if index.field not in have:
                await self._client.create_payload_index(self.spec.name, field_name=index.field,
                                                        field_schema=payload_schema(index))

    async def upsert(self, points: list[StoredPoint]) -> None:
        if not points:
            return
        await self._client.upsert(self.spec.name, wait=True, points=[
            models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points])

    async def delete_document(self, *, source: str, tenant: str | None, keep_hash: str | None = None) -> None:
        must: list[Any] = [models.FieldCondition(key=SOURCE, match=models.MatchValue(value=source)),
                           _owner(self.spec, tenant)]
        must_not = ([models.FieldCondition(key=CONTENT_HASH, match=models.MatchValue(value=keep_hash))]
                    if keep_hash else None)
        await self._client.delete(self.spec.name, wait=True, points_selector=models.FilterSelector(
            filter=models.Filter(must=must, must_not=must_not)))

    async def documents(self) -> list[DocumentRecord]:
        key = self.spec.tenant_key
        out: list[DocumentRecord] = []
        offset: Any = None
        first_chunks = models.Filter(must=[models.FieldCondition(key=CHUNK_INDEX,
                                                                 match=models.MatchValue(value=0))])
        while True:
            records, offset = await self._client.scroll(
                self.spec.name, scroll_filter=first_chunks, limit=1024, offset=offset,
                with_payload=[SOURCE, CONTENT_HASH, key], with_vectors=False)
            for record in records:
                payload = record.payload or {}
                out.append(DocumentRecord(source=payload[SOURCE], tenant=payload.get(key),
                                          content_hash=payload[CONTENT_HASH]))
            if offset is None:
                return out

    async def search(self, vector: list[float], *, limit: int, tenant: str | None,
                     score_threshold: float | None = None) -> list[Hit]:
        where = tenant_filter(self.spec, tenant)
        response = await self._client.query_points(
            self.spec.name, query=vector, limit=limit, query_filter=where, score_threshold=score_threshold,
            search_params=None if where is None else models.SearchParams(hnsw_ef=TENANT_SEARCH_EF),
            with_payload=True)
        return [Hit(id=str(p.id), score=float(p.score), payload=p.payload or {}) for p in response.points]

    async def count(self) -> int:
        return (await self._client.count(self.spec.name, exact=True)).count

    async def ready(self) -> bool:
        try:
            return bool(await self._client.collection_exists(self.spec.name))
        except Exception:
            return False

    async def optimize(self) -> None:
        return None

    async def close(self) -> None:
        await self._client.close()
