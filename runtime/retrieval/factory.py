"""Building the retrieval layer from the gateway config or the AIStack spec.

Entry points for the gateway (`build_retriever`, `build_embedder`) and for ingestion and
`aistack up` (`collection_spec`, `open_store`). The collection itself is described once, in
`aistack.api.collection`, which the operator uses too.
"""

from __future__ import annotations

import os
from pathlib import Path

from aistack.api import collection
from aistack.api.collection import CollectionSpec
from aistack.api.gateway_config import RetrievalConfig
from aistack.api.v1alpha1 import AIStack
from aistack.runtime.retrieval.embedders import build_embedder
from aistack.runtime.retrieval.retriever import QdrantRetriever
from aistack.runtime.retrieval.store import StoreError, VectorStore


def collection_spec(config: RetrievalConfig, *, stack: AIStack | None = None) -> CollectionSpec:
    """The stack's collection when the stack is at hand (its payload indexes included); else
    the one its rendered config names (the gateway only searches, so it needs no indexes)."""
    if stack is not None and stack.spec.retrieval is not None:
        return collection.collection_spec(stack)
    return CollectionSpec(name=config.collection, dimension=config.embedder.dimension,
                          distance=config.distance,
                          tenant_field=config.tenant_field)


def open_store(config: RetrievalConfig, *, spec: CollectionSpec | None = None,
               env: dict[str, str] | None = None) -> VectorStore:
    """A server URL goes through qdrant-client; a local path is the in-process engine."""
    environ = os.environ if env is None else env
    spec = spec or collection_spec(config)
    if config.qdrant_url:
        from aistack.runtime.retrieval.qdrant_server import QdrantClientStore

        api_key = environ.get(config.qdrant_api_key_env) if config.qdrant_api_key_env else None
        if config.qdrant_api_key_env and not api_key:
            raise StoreError(
                f"the Qdrant API key is read from ${config.qdrant_api_key_env}, which is not set: export it")
        return QdrantClientStore(spec=spec, url=config.qdrant_url, api_key=api_key)
    if config.qdrant_path:
        from aistack.runtime.retrieval.edge import EdgeStore

        return EdgeStore(spec=spec, path=Path(config.qdrant_path))
    raise StoreError("retrieval needs a Qdrant URL or an embedded store path; neither is configured")


def build_retriever(config: RetrievalConfig, *, env: dict[str, str] | None = None) -> QdrantRetriever:
    """The gateway's retriever for `config` (loads the local embedding model if named)."""
    return QdrantRetriever(embedder=build_embedder(config.embedder, env=env),
                           store=open_store(config, env=env),
                           top_k=config.top_k, score_threshold=config.score_threshold,
                           max_context_tokens=config.max_context_tokens)
