"""The Qdrant collection of a stack: created when missing, never altered when it differs.

What the collection must be is `aistack.api.collection` (the runtime opens the same one).
A collection's vector size and distance cannot change without re-ingesting everything, so a
mismatch is reported (`RetrievalReady=False`, reason `CollectionMismatch`) and left for a
human; payload indexes are added when missing (cheap and safe). The client comes from an
injectable factory so tests use qdrant-client's local mode. qdrant-client is imported only
when a stack has retrieval: it costs ~90 MiB of operator memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aistack.api.collection import PayloadIndexSpec, collection_spec
from aistack.api.v1alpha1 import AIStack
from aistack.operator.check import Check

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

QdrantFactory = Callable[[str, str | None], "QdrantClient"]
"""(url, api_key) -> client."""

def default_qdrant_factory(url: str, api_key: str | None) -> QdrantClient:
    from qdrant_client import QdrantClient

    return QdrantClient(url=url, api_key=api_key, timeout=10)


class QdrantClients:
    """The operator's Qdrant clients, one per (URL, API key), kept from one reconcile to the next.

    A client holds an HTTP connection pool: made per reconcile (every drift pass, every child
    change) and never closed, each left its sockets and threads behind. The least recently used
    client beyond `size` is closed (a stack deleted, a key rotated), and `close()` closes the rest
    when the operator stops. Called as a `QdrantFactory`, so reconcile code is unchanged.
    """

    def __init__(self, factory: QdrantFactory, *, size: int = 64) -> None:
        self._factory = factory
        self._size = size
        self._clients: OrderedDict[tuple[str, str | None], QdrantClient] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, url: str, api_key: str | None) -> QdrantClient:
        key = (url, api_key)
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            client = self._clients[key] = self._factory(url, api_key)
            evicted = self._clients.popitem(last=False)[1] if len(self._clients) > self._size else None
        if evicted is not None:
            evicted.close()
        return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            client.close()


def connect(stack: AIStack, *, managed_url: str | None, factory: QdrantFactory) -> QdrantClient:
    """A client for the stack's Qdrant: the managed Service at `managed_url` (the render's
    `qdrant_url`), or an external URL that needs no key. The operator reads no Secret: the
    collection of an external Qdrant with a key is the collection Job's (`aistack collection`,
    the render's `collection_job`), which holds the key."""
    retrieval = stack.spec.retrieval
    assert retrieval is not None
    external = retrieval.vector_store.external
    if external is None:
        assert managed_url is not None
        return factory(managed_url, None)
    assert external.api_key_secret_ref is None, "a keyed external Qdrant is the collection Job's"
    return factory(str(external.url).rstrip("/"), None)


def ensure_collection(client: QdrantClient, stack: AIStack) -> Check:
    """Create the collection if missing, add missing payload indexes, report a mismatch."""
    from qdrant_client import models

    spec = collection_spec(stack)
    name, size = spec.name, spec.dimension
    distance = models.Distance(spec.distance)
    if not client.collection_exists(name):
        client.create_collection(name, vectors_config=models.VectorParams(size=size, distance=distance))
        created = True
    else:
        created = False
        info = client.get_collection(name)
        params: Any = info.config.params.vectors
        if not isinstance(params, models.VectorParams):
            return Check(ok=False, reason="CollectionMismatch",
                         message=f"collection {name!r} uses named vectors; aistack needs one unnamed vector "
                                 f"of size {size}; left untouched: use another collection name or migrate it")
        if params.size != size or params.distance != distance:
            return Check(ok=False, reason="CollectionMismatch",
                         message=f"collection {name!r} has size {params.size} and distance "
                         f"{params.distance.value}; "
                                 f"the spec wants size {size} and distance {distance.value}; left untouched: "
                                 "use another collection name, or delete and re-ingest it")
    existing = set() if created else set((client.get_collection(name).payload_schema or {}).keys())
    for index in spec.indexes():
        if index.field not in existing:
            client.create_payload_index(name, field_name=index.field, field_schema=_schema(index))
    return Check(ok=True, reason="CollectionReady",
                 message=f"collection {name!r}: size {size}, distance {distance.value}")


def _schema(index: PayloadIndexSpec) -> Any:
    from qdrant_client import models

    if index.tenant:
        return models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
    return models.PayloadSchemaType(index.type)


def delete_collection(client: QdrantClient, stack: AIStack) -> bool:
    """Delete the collection (deletionPolicy Delete only); False when it was already gone."""
    name = collection_spec(stack).name
    if not client.collection_exists(name):
        return False
    client.delete_collection(name)
    return True
