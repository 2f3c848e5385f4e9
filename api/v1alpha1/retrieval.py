"""Layer 3, retrieval: a Qdrant vector store, one collection, an embedder, and its sources."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, HttpUrl, model_validator

from aistack.api.cel import cel_rules, rule
from aistack.api.rules import RuleCollector, violation
from aistack.api.types import (ApiModel, DnsSubdomain, Quantity, Resources, SecretKeyRef, Storage,
                               quantity_value)

DEFAULT_QDRANT_IMAGE = "qdrant/qdrant:v1.15.4"
DEFAULT_MAX_FILE_SIZE = "16Mi"

Distance = Literal["Cosine", "Dot", "Euclid", "Manhattan"]
PayloadIndexType = Literal["keyword", "integer", "float", "bool", "datetime", "text", "uuid"]

# Output sizes of embedders people commonly declare; others must state `dimension`.
KNOWN_EMBEDDER_DIMENSIONS: dict[str, int] = {
    "sentence-transformers/all-MiniLM-L6-v2": 384,
    "all-MiniLM-L6-v2": 384,
    "sentence-transformers/all-mpnet-base-v2": 768,
    "BAAI/bge-small-en-v1.5": 384,
    "BAAI/bge-base-en-v1.5": 768,
    "BAAI/bge-large-en-v1.5": 1024,
    "BAAI/bge-m3": 1024,
    "intfloat/e5-small-v2": 384,
    "intfloat/e5-base-v2": 768,
    "intfloat/e5-large-v2": 1024,
    "nomic-ai/nomic-embed-text-v1.5": 768,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}

# Tokens each embedder reads per text (its special tokens included); others are taken to read
# DEFAULT_EMBEDDER_MAX_INPUT_TOKENS unless `maxInputTokens` says otherwise.
KNOWN_EMBEDDER_MAX_INPUT_TOKENS: dict[str, int] = {
    "sentence-transformers/all-MiniLM-L6-v2": 256,
    "all-MiniLM-L6-v2": 256,
    "sentence-transformers/all-mpnet-base-v2": 384,
    "BAAI/bge-small-en-v1.5": 512,
    "BAAI/bge-base-en-v1.5": 512,
    "BAAI/bge-large-en-v1.5": 512,
    "BAAI/bge-m3": 8192,
    "intfloat/e5-small-v2": 512,
    "intfloat/e5-base-v2": 512,
    "intfloat/e5-large-v2": 512,
    "nomic-ai/nomic-embed-text-v1.5": 8192,
    "text-embedding-3-small": 8191,
    "text-embedding-3-large": 8191,
    "text-embedding-ada-002": 8191,
}
DEFAULT_EMBEDDER_MAX_INPUT_TOKENS = 512
"""What most BERT-style embedders read; an embedder not in the table above is assumed to read this."""


def embedder_max_input_tokens(model: str, declared: int | None) -> int:
    """Tokens an embedder reads per text: `maxInputTokens` when declared, else the table's, else 512."""
    if declared is not None:
        return declared
    return KNOWN_EMBEDDER_MAX_INPUT_TOKENS.get(model, DEFAULT_EMBEDDER_MAX_INPUT_TOKENS)


QDRANT_NAME = r"^[A-Za-z0-9_-]{1,255}$"
PAYLOAD_FIELD = r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$"


class ManagedQdrant(ApiModel):
    """A Qdrant StatefulSet run by the operator next to the stack."""

    image: str = DEFAULT_QDRANT_IMAGE
    """Qdrant server image."""
    replicas: Annotated[int, Field(ge=1, le=15)] = 1
    """Qdrant pods."""
    storage: Storage = Field(default_factory=lambda: Storage(size="10Gi"))
    """Volume per pod."""
    resources: Resources = Field(default_factory=Resources)
    """Container resources; unset keys default to requests `{cpu: 500m, memory: 1Gi}` and limits
    `{memory: 4Gi}` (or the memory request, when higher)."""


class ExternalQdrant(ApiModel):
    """A Qdrant that already runs elsewhere (Qdrant Cloud, another cluster)."""

    url: HttpUrl
    """HTTP(S) URL of the Qdrant REST API, e.g. `https://xyz.cloud.qdrant.io:6333`."""
    api_key_secret_ref: SecretKeyRef | None = None
    """Secret key holding the Qdrant API key."""


class VectorStore(ApiModel):
    """Where vectors live: exactly one of `managed` or `external`; managed by default."""

    model_config = cel_rules(
        rule(
            '!(has(self.managed) && has(self.external))',
            'set either managed or external, not both',
        ),
    )

    managed: ManagedQdrant | None = None
    """Run Qdrant in the cluster."""
    external: ExternalQdrant | None = None
    """Use an existing Qdrant."""

    @model_validator(mode="after")
    def _one_of(self) -> VectorStore:
        if self.managed is not None and self.external is not None:
            raise violation(("external",), "set either managed or external, not both")
        if self.managed is None and self.external is None:
            self.managed = ManagedQdrant()
        return self


class PayloadIndex(ApiModel):
    """A payload field indexed for filtering."""

    field: Annotated[str, Field(pattern=PAYLOAD_FIELD)]
    """Payload key, e.g. `tenant` or `source`."""
    type: PayloadIndexType = "keyword"
    """Qdrant index type."""


class Collection(ApiModel):
    """The Qdrant collection holding this stack's chunks."""

    name: Annotated[str, Field(pattern=QDRANT_NAME)] | None = None
    """Collection name; defaults to the AIStack's name."""
    distance: Distance = "Cosine"
    """Vector distance; fixed once the collection exists."""
    payload_indexes: list[PayloadIndex] = Field(default_factory=list)
    """Indexed payload fields; the tenant field is always indexed."""
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    """What happens to the collection when the AIStack is deleted: kept unless `Delete`."""


class Embedder(ApiModel):
    """The model that turns text into vectors, for ingestion and queries alike."""

    model_config = cel_rules(
        rule(
            "!has(self.provider) || self.provider != 'openai' || has(self.baseUrl)",
            "baseUrl is required with provider 'openai'",
            '.baseUrl',
        ),
        rule(
            "(has(self.provider) && self.provider == 'openai') || !has(self.baseUrl)",
            "baseUrl is only for provider 'openai'",
            '.baseUrl',
        ),
    )

    provider: Literal["local", "openai"] = "local"
    """`local`: sentence-transformers in the gateway/ingestion process; `openai`: an
    OpenAI-compatible `/v1/embeddings` endpoint (vLLM, TEI, a hosted API)."""
    model: Annotated[str, Field(min_length=1, max_length=256)]
    """Embedding model, e.g. `sentence-transformers/all-MiniLM-L6-v2`."""
    dimension: Annotated[int, Field(ge=1, le=65536)] | None = None
    """Vector size; derived for known models, required otherwise."""
    base_url: HttpUrl | None = None
    """Endpoint for `provider: openai`."""
    api_key_secret_ref: SecretKeyRef | None = None
    """Secret key with the endpoint's API key."""
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    """Texts per embedding call."""
    max_input_tokens: Annotated[int, Field(ge=16, le=1_000_000)] | None = None
    """Tokens the model reads per text, its special tokens included; what follows is dropped, so
    no chunk is made longer. Known for common models (all-MiniLM-L6-v2: 256), 512 otherwise; a
    local model's own limit always applies too."""

    @model_validator(mode="after")
    def _check(self) -> Embedder:
        rules = RuleCollector()
        if self.dimension is None:
            known = KNOWN_EMBEDDER_DIMENSIONS.get(self.model)
            if known is None:
                rules.add(
                    ("dimension",),
                    f"required for model {self.model!r}: its size is not known to aistack "
                    f"(known: {', '.join(sorted(KNOWN_EMBEDDER_DIMENSIONS))})",
                )
            else:
                self.dimension = known
        if self.provider == "openai" and self.base_url is None:
            rules.add(("baseUrl",), "required with provider 'openai'")
        if self.provider == "local" and self.base_url is not None:
            rules.add(("baseUrl",), "only with provider 'openai'")
        rules.raise_if_any()
        return self


SOURCE_PATH_IN_VOLUME = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*/?$"
"""A relative path whose segments start with no dot (no `..`, no hidden folders)."""


class SourceVolume(ApiModel):
    """Where a path source's files are in Kubernetes: the ingestion Job mounts this volume,
    read-only, at the source's path. Exactly one of `configMap` or `persistentVolumeClaim`."""

    model_config = cel_rules(
        rule(
            'has(self.configMap) != has(self.persistentVolumeClaim)',
            'set exactly one of configMap or persistentVolumeClaim',
        ),
    )

    config_map: DnsSubdomain | None = None
    """A ConfigMap whose keys are the files (`kubectl create configmap NAME --from-file=DIR`;
    1 MiB at most, no sub-folders)."""
    persistent_volume_claim: DnsSubdomain | None = None
    """A PersistentVolumeClaim holding the files (mounted read-only)."""

    @model_validator(mode="after")
    def _one_of(self) -> SourceVolume:
        if (self.config_map is None) == (self.persistent_volume_claim is None):
            raise violation(("configMap",), "set exactly one of configMap or persistentVolumeClaim")
        return self


class Source(ApiModel):
    """Documents to ingest: a folder/file path or an `s3://` prefix. `aistack up`/`aistack
    ingest` read a path from disk (relative to the manifest); in Kubernetes a path is read
    from its `volume`, and a path without one is not ingested there."""

    model_config = cel_rules(
        rule(
            f"!has(self.volume) || self.uri.matches('{SOURCE_PATH_IN_VOLUME}')",
            "with a volume, uri must be a relative path whose parts do not start with '.'",
            '.uri',
        ),
    )

    uri: Annotated[str, Field(min_length=1, max_length=2048,
                              pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|[^:]+)$")]
    """`s3://bucket/prefix` or a path."""
    tenant: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    """Tenant stamped on every chunk of this source."""
    include: list[str] = Field(default_factory=lambda: ["**/*.md", "**/*.txt", "**/*.html", "**/*.pdf"])
    """Glob patterns of files to take, relative to the source and matched as in .gitignore: `*`
    stays within a folder (`guides/*.md`), `**/` spans folders (`guides/**/*.md`), and a
    pattern without a `/` (`*.md`) matches a file's name at any depth."""
    volume: SourceVolume | None = None
    """For a path: the volume that holds it in Kubernetes (ignored by local runs)."""

    @model_validator(mode="after")
    def _volume_path(self) -> Source:
        if self.volume is not None and not re.match(SOURCE_PATH_IN_VOLUME, self.uri):
            raise violation(("uri",), f"{self.uri!r}: with a volume, uri must be a relative path whose parts "
                                      "do not start with '.' (it is where the volume is mounted)")
        return self


class Chunking(ApiModel):
    """How documents are cut into chunks, in the embedder's tokens: a local model's own
    word-pieces, an estimate (from above) for a remote one. Every chunk, its heading included,
    is at most `size` tokens and never more than the embedder reads (`embedder.maxInputTokens`)."""

    model_config = cel_rules(
        rule(
            '(has(self.overlap) ? self.overlap : 32) < (has(self.size) ? self.size : 256)',
            'overlap must be smaller than size',
            '.overlap',
        ),
    )

    size: Annotated[int, Field(ge=16, le=32768)] = 256
    """Largest chunk in the embedder's tokens (lowered to what the embedder reads)."""
    overlap: Annotated[int, Field(ge=0, le=8192)] = 32
    """Tokens of the previous chunk repeated at the start of the next (at most half a chunk)."""

    @model_validator(mode="after")
    def _check(self) -> Chunking:
        if self.overlap >= self.size:
            raise violation(("overlap",), f"{self.overlap} must be smaller than size ({self.size})")
        return self


class RetrievalSpec(ApiModel):
    """Retrieval-augmented generation: search the collection and put the hits in the prompt."""

    model_config = cel_rules(
        rule(
            "!has(self.vectorStore) || !has(self.vectorStore.external) || "
            "!has(self.vectorStore.external.apiKeySecretRef) || !has(self.collection) || "
            "!has(self.collection.deletionPolicy) || self.collection.deletionPolicy != 'Delete'",
            "deletionPolicy Delete needs a Qdrant the operator can reach without a key: it reads no "
            "Secret (delete the collection on the external Qdrant yourself)",
            '.collection.deletionPolicy',
        ),
    )

    vector_store: VectorStore = Field(default_factory=VectorStore)
    """The Qdrant to use."""
    collection: Collection = Field(default_factory=Collection)
    """The collection and its lifecycle."""
    embedder: Embedder
    """The embedding model (required: a collection's vector size comes from it)."""
    top_k: Annotated[int, Field(ge=1, le=100)] = 4
    """Chunks retrieved per question."""
    score_threshold: Annotated[float, Field(ge=-1, le=1e6)] | None = None
    """Hits scoring below this are dropped."""
    max_context_tokens: Annotated[int, Field(ge=64, le=1_000_000)] = 2000
    """Token budget for retrieved context in the prompt."""
    tenant_field: Annotated[str, Field(pattern=PAYLOAD_FIELD)] | None = None
    """Payload field holding the tenant; when set, every search is filtered by the caller's
    tenant and a caller without one sees nothing tenant-scoped."""
    chunking: Chunking = Field(default_factory=Chunking)
    """Chunking of ingested documents."""
    sources: list[Source] = Field(default_factory=list)
    """Documents to ingest (an ingestion Job in Kubernetes, `aistack ingest` locally)."""
    max_file_size: Quantity = DEFAULT_MAX_FILE_SIZE
    """Largest file ingested, e.g. `16Mi`: a bigger one is skipped unread and reported (one huge
    file would hold ingestion, and `aistack up`, for many minutes). `aistack ingest
    --max-file-size` overrides it."""

    @model_validator(mode="after")
    def _check(self) -> RetrievalSpec:
        rules = RuleCollector()
        if quantity_value(self.max_file_size) < 1:
            rules.add(("maxFileSize",), f"{self.max_file_size!r} must be at least 1 byte")
        external = self.vector_store.external
        if (external is not None and external.api_key_secret_ref is not None
                and self.collection.deletion_policy == "Delete"):
            rules.add(("collection", "deletionPolicy"),
                      "Delete needs a Qdrant the operator can reach without a key: it reads no Secret "
                      "(delete the collection on the external Qdrant yourself)")
        rules.raise_if_any()
        return self

    ingestion_resources: Resources = Field(default_factory=Resources)
    """The ingestion Job's container resources; unset keys default to requests `{cpu: 500m,
    memory: 1Gi}` and limits `{memory: 4Gi}`."""

    @property
    def max_file_bytes(self) -> int:
        return int(quantity_value(self.max_file_size))
