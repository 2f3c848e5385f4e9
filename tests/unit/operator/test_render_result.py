"""`Rendered`: the keys and URLs the operator reads are those of the objects render produced,
so reconcile, status and the collection check never re-derive a child's name or a URL."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from aistack.api.gateway_config import GatewayConfig
from aistack.operator.render import Rendered, render

EXTERNAL = {"spec": {
    "model": {"provider": "openai", "vllm": None, "name": "gpt-4o-mini",
              "openai": {"baseUrl": "https://api.openai.com/v1",
                         "apiKeySecretRef": {"name": "openai", "key": "api-key"}}},
    "retrieval": {"vectorStore": {"managed": None, "external": {"url": "https://qdrant.example.com"}}},
    "observability": {"mlflow": {"managed": None, "external": {"trackingUri": "https://mlflow.example.com"}}},
}}


def keys(rendered: Rendered, *kinds: str) -> set[tuple[str, str]]:
    return {(m["kind"], m["metadata"]["name"]) for m in rendered.manifests if m["kind"] in kinds}


def gateway_config(rendered: Rendered) -> GatewayConfig:
    config_map = rendered.manifest(("ConfigMap", f"{rendered.gateway[1]}-config"))
    return GatewayConfig.model_validate(yaml.safe_load(config_map["data"]["config.yaml"]))


@pytest.mark.parametrize(("name", "patch"), [("quickstart", None), ("rag", None), ("production", None),
                                             ("production", EXTERNAL)])
def test_the_keys_name_exactly_the_rendered_workloads_and_jobs(make_stack, name: str, patch: Any) -> None:
    rendered = render(make_stack(name, patch), version="1.0")
    workloads = {rendered.gateway, rendered.model, rendered.store, rendered.tracking} - {None}
    assert keys(rendered, "Deployment", "StatefulSet") == workloads
    assert keys(rendered, "Job") == {rendered.ingestion_job, rendered.evaluation_job} - {None}
    gateway = rendered.manifest(rendered.gateway)
    assert gateway["spec"]["selector"]["matchLabels"] == rendered.gateway_selector
    namespace = rendered.stack.namespace
    assert rendered.endpoint == f"http://{rendered.gateway[1]}.{namespace}.svc.cluster.local:8080/v1"
    assert ("Service", rendered.gateway[1]) in keys(rendered, "Service")
    if rendered.store is not None:
        assert rendered.qdrant_url == f"http://{rendered.store[1]}.{namespace}.svc.cluster.local:6333"
        assert ("Service", rendered.store[1]) in keys(rendered, "Service")
        # one Qdrant URL: the gateway's config and the operator's collection check use the same
        retrieval = gateway_config(rendered).retrieval
        assert retrieval is not None and retrieval.qdrant_url == rendered.qdrant_url
    else:
        assert rendered.qdrant_url is None


def test_external_layers_have_no_keys(make_stack) -> None:
    rendered = render(make_stack("production", EXTERNAL), version="1.0")
    assert (rendered.model, rendered.store, rendered.tracking, rendered.qdrant_url) == (None, None, None,
                                                                                        None)
    assert rendered.gateway == ("Deployment", "support-copilot-gateway")


def test_without_leaves_out_one_child_and_manifest_refuses_an_unknown_one(make_stack) -> None:
    rendered = render(make_stack("production"), version="1.0")
    assert rendered.evaluation_job is not None
    rest = rendered.without(rendered.evaluation_job)
    assert [m for m in rendered.manifests if m not in rest] == [rendered.manifest(rendered.evaluation_job)]
    with pytest.raises(KeyError):
        rendered.manifest(("Deployment", "support-copilot-nothing"))
