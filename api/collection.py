"""The Qdrant collection of a stack, as the operator creates it and the runtime expects it.

One description for both sides: the operator creates the collection in a managed or external
Qdrant before the ingestion Job runs; ingestion, the gateway and `aistack up` open the same
collection (or create it in the embedded store) and refuse one whose vectors differ. Vector
size and distance cannot change without re-ingesting, so both sides report a mismatch and
leave the collection alone; payload indexes are cheap and are added when missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aistack.api.v1alpha1.retrieval import Distance, PayloadIndexType

if TYPE_CHECKING:
    from aistack.api.v1alpha1 import AIStack

# Payload keys every chunk carries (the tenant key is the spec's `tenantField`).
TEXT = "text"
SOURCE = "source"
TITLE = "title"
CHUNK_INDEX = "chunk_index"
CONTENT_HASH = "content_hash"
DEFAULT_TENANT_FIELD = "tenant"

CHUNK_INDEXES: tuple[tuple[str, PayloadIndexType], ...] = (
    (SOURCE, "keyword"), (CONTENT_HASH, "keyword"), (CHUNK_INDEX, "integer"))
"""What ingestion looks chunks up by (a document's chunks, a version's hash)."""


TENANT_SEARCH_EF = 384
"""`hnsw_ef` of a search filtered by tenant, in both engines. A tenant is a slice of the graph:
with Qdrant's default beam (the build's 100) a 10%-tenant's recall@10 fell to 0.76 at 300k
chunks (clustered 384-d vectors, qdrant-edge); 384 gave 0.97 at p99 3 ms there, 512 0.985 at
twice the time, exact search 1.0 at four times (`bench/retrieval.py` prints them side by side).
The payload index on the tenant key lets Qdrant plan a small tenant as an exact scan instead.
An unfiltered search keeps the default."""


@dataclass(frozen=True)
class PayloadIndexSpec:
    field: str
    type: PayloadIndexType
    tenant: bool = False
    """A keyword index marked as the tenant (Qdrant's `is_tenant`: chunks stored by tenant)."""


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection must look like: vector size and distance come from the embedder."""

    name: str
    dimension: int
    distance: Distance = "Cosine"
    tenant_field: str | None = None
    payload_indexes: tuple[tuple[str, PayloadIndexType], ...] = ()
    """(field, type) of the spec's `payloadIndexes`, in declared order."""

    @property
    def tenant_key(self) -> str:
        return self.tenant_field or DEFAULT_TENANT_FIELD

    def indexes(self) -> tuple[PayloadIndexSpec, ...]:
        """Every payload index the collection needs, one per field: the chunks' own keys, the
        declared ones, and the tenant field (which wins over a declared index of the same field)."""
        wanted = {field: PayloadIndexSpec(field, kind)
                  for field, kind in (*CHUNK_INDEXES, *self.payload_indexes)}
        if self.tenant_field:
            wanted[self.tenant_field] = PayloadIndexSpec(self.tenant_field, "keyword", tenant=True)
        return tuple(wanted.values())


def collection_spec(stack: AIStack) -> CollectionSpec:
    """The collection of a stack's `spec.retrieval` (named after the stack unless it names one).
    Raises ValueError for a stack without retrieval."""
    retrieval = stack.spec.retrieval
    if retrieval is None:
        raise ValueError(f"AIStack {stack.name!r} has no spec.retrieval, so no collection")
    return CollectionSpec(
        name=retrieval.collection.name or stack.name,
        dimension=retrieval.embedder.dimension or 0,
        distance=retrieval.collection.distance,
        tenant_field=retrieval.tenant_field,
        payload_indexes=tuple((i.field, i.type) for i in retrieval.collection.payload_indexes),
    )
