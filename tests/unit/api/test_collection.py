"""The one description of a stack's Qdrant collection, read by the operator and the runtime."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aistack.api.collection import CollectionSpec, PayloadIndexSpec, collection_spec
from aistack.api.gateway_config import Endpoints, build_gateway_config
from aistack.api.manifests import parse_stack

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def stack(name: str, **retrieval: object):
    data = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    data["spec"]["retrieval"].update(retrieval)
    return parse_stack(data)


def test_the_collection_comes_from_the_retrieval_spec() -> None:
    spec = collection_spec(stack("production"))
    assert spec == CollectionSpec(name="support-kb", dimension=spec.dimension, distance="Cosine",
                                  tenant_field=spec.tenant_field,
                                  payload_indexes=(("source", "keyword"), ("product", "keyword")))
    assert spec.dimension > 0


def test_an_unnamed_collection_takes_the_stack_name() -> None:
    rag = stack("rag")
    rag.spec.retrieval.collection.name = None
    assert collection_spec(rag).name == rag.name


def test_every_index_once_and_the_tenant_field_is_the_tenant_keyword_index() -> None:
    spec = collection_spec(stack("rag", tenantField="org", collection={
        "payloadIndexes": [{"field": "org", "type": "integer"}, {"field": "lang"},
                           {"field": "source", "type": "text"}]}))
    assert spec.indexes() == (
        PayloadIndexSpec("source", "text"),  # a declared index wins over the chunks' own
        PayloadIndexSpec("content_hash", "keyword"),
        PayloadIndexSpec("chunk_index", "integer"),
        PayloadIndexSpec("org", "keyword", tenant=True),  # the tenant field wins over a declared index
        PayloadIndexSpec("lang", "keyword"),
    )


def test_the_gateway_config_names_the_same_collection() -> None:
    production = stack("production", tenantField="org")
    spec = collection_spec(production)
    r = build_gateway_config(production,
                             Endpoints(model_base_url="http://m:8000/v1", qdrant_url="http://q:6333",
                                                     tracking_uri="http://t:5000")).retrieval
    assert r is not None
    assert (r.collection, r.embedder.dimension, r.distance, r.tenant_field) == \
        (spec.name, spec.dimension, spec.distance, spec.tenant_field)


def test_a_stack_without_retrieval_has_no_collection() -> None:
    quickstart = parse_stack(yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text()))
    with pytest.raises(ValueError, match="no spec.retrieval"):
        collection_spec(quickstart)
