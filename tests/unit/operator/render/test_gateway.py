"""The gateway layer (render/gateway.py): its ConfigMap, image, autoscaling and config-hash rollout."""

from __future__ import annotations

from typing import Any

import yaml

from aistack.api.conventions import CONFIG_HASH_ANNOTATION
from aistack.api.gateway_config import GatewayConfig
from aistack.api.images import package_version
from aistack.operator.render import render


def test_gateway_config_map_holds_the_gateway_config(make_stack, by_kind_name) -> None:
    manifests = by_kind_name(render(make_stack("production")).manifests)
    data = yaml.safe_load(manifests[("ConfigMap", "support-copilot-gateway-config")]["data"]["config.yaml"])
    config = GatewayConfig.model_validate(data)
    assert config.model.primary.base_url == "http://support-copilot-model.ai-prod.svc.cluster.local:8000/v1"
    assert config.retrieval is not None
    assert config.retrieval.qdrant_url == "http://support-copilot-vector-store.ai-prod.svc.cluster.local:6333"
    assert config.tracing is not None
    assert config.tracing.tracking_uri == "http://support-copilot-mlflow.ai-prod.svc.cluster.local:5000"
    assert config.guardrails is not None and config.guardrails.sidecar_url == "http://127.0.0.1:8001"
    gateway = manifests[("Deployment", "support-copilot-gateway")]["spec"]["template"]["spec"]
    c = gateway["containers"][0]
    assert c["image"] == "ghcr.io/aistack-dev/runtime:" + package_version()
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"name": "AISTACK_GATEWAY_CONFIG", "value": "/etc/aistack/gateway/config.yaml"} in c["env"]
    assert gateway["automountServiceAccountToken"] is False


def test_gateway_image_override(make_stack, by_kind_name) -> None:
    stack = make_stack("quickstart", {"spec": {"gateway": {"image": "registry.example.com/rt:1"}}})
    gateway = by_kind_name(render(stack).manifests)[("Deployment", "quickstart-gateway")]
    assert gateway["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/rt:1"


def test_hpa_owns_replicas_when_autoscaling(make_stack, by_kind_name) -> None:
    manifests = by_kind_name(render(make_stack("production")).manifests)
    assert "replicas" not in manifests[("Deployment", "support-copilot-gateway")]["spec"]
    hpa = manifests[("HorizontalPodAutoscaler", "support-copilot-gateway")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    fixed = by_kind_name(render(make_stack("production",
                                           {"spec": {"gateway": {"autoscaling": None}}})).manifests)
    assert fixed[("Deployment", "support-copilot-gateway")]["spec"]["replicas"] == 2
    assert ("HorizontalPodAutoscaler", "support-copilot-gateway") not in fixed


def _hash(manifests: list[dict[str, Any]], name: str) -> str:
    deployment = next(m for m in manifests if (m["kind"], m["metadata"]["name"]) == ("Deployment", name))
    return deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]


def test_config_change_rolls_gateway_but_not_model(make_stack) -> None:
    before = render(make_stack("production")).manifests
    after = render(make_stack("production",
                              {"spec": {"orchestration": {"systemPrompt": "Be brief."}}})).manifests
    assert _hash(before, "support-copilot-gateway") != _hash(after, "support-copilot-gateway")
    assert _hash(before, "support-copilot-model") == _hash(after, "support-copilot-model")
    args = render(make_stack("production", {"spec": {"model": {"vllm": {"extraArgs": []}}}})).manifests
    assert _hash(before, "support-copilot-model") != _hash(args, "support-copilot-model")
