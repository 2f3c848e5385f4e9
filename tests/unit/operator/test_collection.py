"""The operator creates the collection the runtime expects: the same vectors and the same
payload indexes (`aistack.api.collection`), so whichever side creates it first, it is one
collection."""

from __future__ import annotations

from typing import Any

from qdrant_client import QdrantClient, models

from aistack.api.collection import collection_spec
from aistack.operator.collection import QdrantClients, ensure_collection


class IndexRecordingClient(QdrantClient):
    """qdrant-client's local mode keeps no payload indexes; this one remembers the requests."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.indexes: dict[str, Any] = {}

    def create_payload_index(self, collection_name: str, field_name: str, field_schema: Any = None,
                             **kwargs: Any) -> Any:
        self.indexes[field_name] = field_schema


def test_a_new_collection_gets_the_specs_vectors_and_every_index(make_stack) -> None:
    stack = make_stack("production", {"spec": {"retrieval": {"tenantField": "org"}}})
    client = IndexRecordingClient()
    check = ensure_collection(client, stack)
    spec = collection_spec(stack)
    assert (check.ok, check.reason) == (True, "CollectionReady")
    params = client.get_collection(spec.name).config.params.vectors
    assert isinstance(params, models.VectorParams)
    assert (params.size, params.distance.value) == (spec.dimension, spec.distance)
    assert list(client.indexes) == [i.field for i in spec.indexes()]
    assert client.indexes["org"] == models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD,
                                                              is_tenant=True)
    assert client.indexes["chunk_index"] == models.PayloadSchemaType.INTEGER


def test_a_collection_of_another_size_is_reported_and_left_alone(make_stack) -> None:
    stack = make_stack("production")
    client = IndexRecordingClient()
    name = collection_spec(stack).name
    client.create_collection(name, vectors_config=models.VectorParams(size=8, distance=models.Distance.DOT))
    check = ensure_collection(client, stack)
    assert (check.ok, check.reason) == (False, "CollectionMismatch")
    assert "size 8 and distance Dot" in check.message and client.indexes == {}


class _Client:
    def __init__(self, url: str, key: str | None) -> None:
        self.url, self.key, self.closed = url, key, False

    def close(self) -> None:
        self.closed = True


def test_a_client_per_server_and_key_is_kept_and_closed_when_dropped() -> None:
    made: list[_Client] = []

    def factory(url: str, key: str | None) -> Any:
        made.append(_Client(url, key))
        return made[-1]

    clients = QdrantClients(factory, size=2)
    first = clients("http://a:6333", None)
    assert clients("http://a:6333", None) is first and len(made) == 1
    rotated = clients("http://a:6333", "new-key")  # a rotated key: a client of its own
    assert rotated is not first and len(made) == 2
    clients("http://a:6333", None)  # used again: the key's client is now the least recent
    third = clients("http://b:6333", None)
    assert rotated.closed and not first.closed and not third.closed  # beyond size: the least recent closed
    clients.close()
    assert all(c.closed for c in made)
    assert clients("http://a:6333", None) is not first  # after close, a new one
