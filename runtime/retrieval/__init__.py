"""Retrieval layer: embedders, the Qdrant-backed vector store, and the gateway's Retriever."""

from aistack.runtime.retrieval.embedders import EmbeddingError, LocalEmbedder, OpenAIEmbedder, build_embedder
from aistack.runtime.retrieval.factory import build_retriever, collection_spec, open_store
from aistack.runtime.retrieval.retriever import QdrantRetriever
from aistack.runtime.retrieval.store import StoreError, VectorStore

__all__ = [
    "EmbeddingError", "LocalEmbedder", "OpenAIEmbedder", "QdrantRetriever", "StoreError", "VectorStore",
    "build_embedder", "build_retriever", "collection_spec", "open_store",
]
