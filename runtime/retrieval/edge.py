"""`VectorStore` on qdrant-edge-py: Qdrant's Rust engine inside this process.

The embedded default for `aistack up` and local ingestion. One shard per collection under
the state folder (`<path>/<collection>/`). A shard belongs to one process at a time, so the
shard is opened once per process and shared (`open_edge_shard`); a second process gets a
clear error instead of a corrupted folder.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from aistack.api.collection import CHUNK_INDEX, CONTENT_HASH, SOURCE, TENANT_SEARCH_EF, CollectionSpec
from aistack.runtime.retrieval.store import DocumentRecord, Hit, StoredPoint, StoreError

_SCHEMA = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "bool": qe.PayloadSchemaType.Bool,
    "datetime": qe.PayloadSchemaType.Datetime,
    "text": qe.PayloadSchemaType.Text,
    "uuid": qe.PayloadSchemaType.Uuid,
}
_DISTANCE = {"Cosine": qe.Distance.Cosine, "Dot": qe.Distance.Dot, "Euclid": qe.Distance.Euclid,
             "Manhattan": qe.Distance.Manhattan}
LOCK_FILE = ".aistack.lock"

_shards: dict[str, tuple[qe.EdgeShard, int]] = {}
_shards_lock = threading.Lock()


def tenant_filter(spec: CollectionSpec, tenant: str | None) -> qe.Filter | None:
    """Own chunks plus shared ones, or shared ones only (see `store`)."""
    if spec.tenant_field is None:
        return None
    key = spec.tenant_field
    if tenant is None:
        return qe.Filter(must=[qe.IsEmptyCondition(key)])
    return qe.Filter(should=[qe.FieldCondition(key, match=qe.MatchValue(tenant)), qe.IsEmptyCondition(key)])


def _owner(spec: CollectionSpec, tenant: str | None) -> Any:
    if tenant is None:
        return qe.IsEmptyCondition(spec.tenant_key)
    return qe.FieldCondition(spec.tenant_key, match=qe.MatchValue(tenant))


def _lock_folder(folder: Path) -> int:
    """An advisory lock held for the life of the process: two writers would corrupt a shard."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise StoreError(
            f"the embedded vector store {folder} is open in another process (is `aistack up` running?): "
            "stop it (Ctrl-C) and ingest then; `aistack up` itself ingests retrieval.sources when it starts"
        ) from exc
    return fd


def open_edge_shard(folder: Path, spec: CollectionSpec) -> tuple[qe.EdgeShard, bool]:
    """The shard in `folder`, created when missing; (shard, created). Shared within a process."""
    key = str(folder.resolve())
    with _shards_lock:
        if key in _shards:
            return _shards[key][0], False
        fd = _lock_folder(folder)
        try:
            config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=spec.dimension,
                                                               distance=_DISTANCE[spec.distance]))
            created = not any(p.name != LOCK_FILE for p in folder.iterdir())
            if created:
                shard = qe.EdgeShard.create(key, config)
            else:
                try:
                    shard = qe.EdgeShard.load(key, config)
                except Exception as exc:  # the engine raises a bare Exception on incompatibility
                    raise StoreError(
                        f"collection {spec.name!r} in {folder} does not fit the embedder ({spec.dimension}-d "
                        f"{spec.distance}): {exc}. Use a new collection name, or delete the folder and "
                        "re-ingest"
                    ) from exc
        except BaseException:
            os.close(fd)
            raise
        _shards[key] = (shard, fd)
        return shard, created


def close_edge_shard(folder: Path) -> None:
    key = str(folder.resolve())
    with _shards_lock:
        entry = _shards.pop(key, None)
    if entry is not None:
        shard, fd = entry
        shard.flush()
        shard.close()
        os.close(fd)


class EdgeStore:
    """A collection as an in-process Qdrant shard at `<path>/<collection>`."""

    engine = "qdrant-edge"

    def __init__(self, *, spec: CollectionSpec, path: str | Path, hnsw_ef: int | None = None) -> None:
        self.spec = spec
        self._folder = Path(path) / spec.name
        self._shard: qe.EdgeShard | None = None
        self._params = qe.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None
        self._tenant_params = qe.SearchParams(hnsw_ef=hnsw_ef or TENANT_SEARCH_EF)
        self._write_lock = asyncio.Lock()

    def _open(self) -> qe.EdgeShard:
        if self._shard is None:
            self._shard, _ = open_edge_shard(self._folder, self.spec)
        return self._shard

    async def ensure_collection(self) -> bool:
        existed = self._folder.is_dir() and any(p.name != LOCK_FILE for p in self._folder.iterdir())
        shard = await asyncio.to_thread(self._open)
        have = set(shard.info().payload_schema)
        for index in self.spec.indexes():
            if index.field not in have:
                schema = qe.KeywordIndexParams(is_tenant=True) if index.tenant else _SCHEMA[index.type]
                await asyncio.to_thread(shard.update,
                                        qe.UpdateOperation.create_field_index(index.field, schema))
        return not existed

    async def upsert(self, points: list[StoredPoint]) -> None:
        if not points:
            return
        op = qe.UpdateOperation.upsert_points([qe.Point(p.id, p.vector, p.payload) for p in points])
        async with self._write_lock:
            await asyncio.to_thread(self._open().update, op)

    async def delete_document(self, *, source: str, tenant: str | None, keep_hash: str | None = None) -> None:
        must = [qe.FieldCondition(SOURCE, match=qe.MatchValue(source)), _owner(self.spec, tenant)]
        keep = qe.FieldCondition(CONTENT_HASH, match=qe.MatchValue(keep_hash)) if keep_hash else None
        op = qe.UpdateOperation.delete_points_by_filter(
            qe.Filter(must=must, must_not=[keep] if keep is not None else None))
        async with self._write_lock:
            await asyncio.to_thread(self._open().update, op)

    async def documents(self) -> list[DocumentRecord]:
        return await asyncio.to_thread(self._documents)

    def _documents(self) -> list[DocumentRecord]:
        shard = self._open()
        key = self.spec.tenant_key
        first_chunks = qe.Filter(must=[qe.FieldCondition(CHUNK_INDEX, match=qe.MatchValue(0))])
        out: list[DocumentRecord] = []
        offset: Any = None
        while True:
            records, offset = shard.scroll(qe.ScrollRequest(
                offset=offset, limit=1024, filter=first_chunks, with_payload=True, with_vector=False))
            for record in records:
                payload = record.payload or {}
                out.append(DocumentRecord(source=payload[SOURCE], tenant=payload.get(key),
                                          content_hash=payload[CONTENT_HASH]))
            if offset is None:
                return out

    def search_sync(self, vector: list[float], *, limit: int, tenant: str | None,
                    score_threshold: float | None = None) -> list[Hit]:
        """Blocking search (sub-millisecond to a few ms): for callers already off the loop."""
        where = tenant_filter(self.spec, tenant)
        params = self._params if where is None else self._tenant_params
        points = self._open().query(qe.QueryRequest(
            limit=limit, query=qe.Query.Nearest(vector), filter=where, score_threshold=score_threshold,
            with_payload=True, with_vector=False, params=params))
        return [Hit(id=str(p.id), score=float(p.score), payload=p.payload or {}) for p in points]

    async def search(self, vector: list[float], *, limit: int, tenant: str | None,
                     score_threshold: float | None = None) -> list[Hit]:
        return await asyncio.to_thread(self.search_sync, vector, limit=limit, tenant=tenant,
                                       score_threshold=score_threshold)

    async def count(self) -> int:
        return await asyncio.to_thread(lambda: self._open().count(qe.CountRequest(exact=True)))

    async def ready(self) -> bool:
        try:
            self._open()
            return True
        except StoreError:
            return False

    async def optimize(self) -> None:
        async with self._write_lock:
            await asyncio.to_thread(self._optimize)

    def _optimize(self) -> None:
        shard = self._open()
        shard.optimize()
        shard.flush()

    async def close(self) -> None:
        if self._shard is not None:
            self._shard = None
            await asyncio.to_thread(close_edge_shard, self._folder)
