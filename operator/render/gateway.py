"""The serving endpoint: the gateway Deployment (runtime image, plus the guardrails sidecar),
its config ConfigMap, Service and optional HorizontalPodAutoscaler.

The config is `aistack.api.gateway_config.build_gateway_config` wired to the in-cluster
Service URLs (`endpoints`); it names secrets only as env vars, which the pod fills with
`secretKeyRef`. The guardrails sidecar comes in as an argument: `render()` asks the guardrails
layer for it, so that this module imports no other layer.
"""

from __future__ import annotations

from typing import Any

from aistack.api import resources as default_resources
from aistack.api.conventions import (
    COMPONENT_GATEWAY,
    CONFIG_HASH_ANNOTATION,
    GATEWAY_CONFIG_ENV,
    GATEWAY_CONFIG_PATH,
    GATEWAY_PORT,
    GUARDRAILS_PORT,
)
from aistack.api.gateway_config import Endpoints, GatewayConfig, build_gateway_config
from aistack.api.types import SecretKeyRef
from aistack.operator.render.common import (
    API_TOKEN_DIR,
    API_TOKEN_VOLUME,
    Manifest,
    RenderContext,
    api_token_volume,
    config_file,
    container_security,
    content_hash,
    http_probe,
    labels,
    metadata,
    pod_security,
    resources,
    secret_env,
    selector_labels,
    service,
    service_account,
)
from aistack.operator.render.endpoints import (
    canary_base_url,
    canary_replicas_dns,
    gateway_account,
    gateway_name,
    model_base_url,
    model_load_lease,
    model_replicas_dns,
    qdrant_url,
    tracking_uri,
)

CONFIG_FILE = GATEWAY_CONFIG_PATH.rsplit("/", 1)[1]
CONFIG_DIR = GATEWAY_CONFIG_PATH.rsplit("/", 1)[0]
CONFIG_VOLUME = "config"
"""The pod volume of the gateway's ConfigMap, mounted at `CONFIG_DIR` (the sidecar reads it too)."""

Sidecar = tuple[dict[str, Any], list[dict[str, Any]]]
"""A container that joins the gateway pod, and the volumes it adds."""
def gateway_config(ctx: RenderContext, *, spec_weight: bool = False) -> GatewayConfig:
    """The gateway's config; `spec_weight`: with the canary's weight of the spec, not the one in
    force (what the pods' template hash is taken of, so that the operator moving the weight only
    changes the ConfigMap, which the gateways reload, and restarts no pod)."""
    return build_gateway_config(ctx.stack, Endpoints(
        model_base_url=model_base_url(ctx),
        model_replicas_dns=model_replicas_dns(ctx),
        canary_base_url=canary_base_url(ctx),
        canary_replicas_dns=canary_replicas_dns(ctx),
        model_load_lease=model_load_lease(ctx),
        qdrant_url=qdrant_url(ctx),
        tracking_uri=tracking_uri(ctx),
        guardrails_engine="sidecar",
        guardrails_url=f"http://127.0.0.1:{GUARDRAILS_PORT}",
    ), canary_weight=None if spec_weight else ctx.canary_weight)


def gateway_secrets(ctx: RenderContext) -> list[SecretKeyRef]:
    """Every Secret key the gateway reads (model, fallback, Qdrant, embedder, tools, MLflow,
    its own API keys); `render_gateway` checks the config names no other env var."""
    spec = ctx.stack.spec
    refs: list[SecretKeyRef | None] = [spec.gateway.api_keys_secret_ref]
    if spec.model.openai is not None:
        refs.append(spec.model.openai.api_key_secret_ref)
    if spec.model.fallback is not None:
        refs.append(spec.model.fallback.api_key_secret_ref)
    if spec.retrieval is not None:
        external = spec.retrieval.vector_store.external
        refs.append(external.api_key_secret_ref if external else None)
        refs.append(spec.retrieval.embedder.api_key_secret_ref)
    refs += [t.auth_secret_ref for t in spec.orchestration.tools]
    if spec.observability is not None and spec.observability.mlflow.external is not None:
        refs.append(spec.observability.mlflow.external.token_secret_ref)
    unique = {ref.env_name(): ref for ref in refs if ref is not None}
    return [unique[k] for k in sorted(unique)]


def render_gateway(ctx: RenderContext, *, sidecar: Sidecar | None = None) -> list[Manifest]:
    spec = ctx.stack.spec
    name = gateway_name(ctx)
    config = gateway_config(ctx)
    secrets = gateway_secrets(ctx)
    _check_env_names(config, {ref.env_name() for ref in secrets})
    config_map: dict[str, Any] = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": metadata(ctx, name=ctx.name("gateway-config"), component=COMPONENT_GATEWAY),
        "data": {CONFIG_FILE: config_file(config.to_wire())},
    }
    container: dict[str, Any] = {
        "name": "gateway",
        "image": ctx.runtime_image,
        "env": [
            {"name": GATEWAY_CONFIG_ENV, "value": GATEWAY_CONFIG_PATH},
            {"name": "HOME", "value": "/tmp"},
            {"name": "HF_HOME", "value": "/tmp/huggingface"},
            *[secret_env(ref.env_name(), ref) for ref in secrets],
        ],
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "resources": resources(spec.gateway.resources, default_resources.GATEWAY),
        "startupProbe": http_probe("/healthz", "http", period=2, failures=90),
        "readinessProbe": http_probe("/readyz", "http", period=5, failures=3),
        "livenessProbe": http_probe("/healthz", "http", period=10, failures=3),
        "volumeMounts": [
            {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": container_security(),
    }
    containers = [container]
    volumes: list[dict[str, Any]] = [
        {"name": CONFIG_VOLUME, "configMap": {"name": config_map["metadata"]["name"]}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if model_load_lease(ctx) is not None:  # the gateway reports the model's load (one Lease, `patch`)
        volumes.append(api_token_volume())
        container["volumeMounts"].append({"name": API_TOKEN_VOLUME, "mountPath": API_TOKEN_DIR,
                                          "readOnly": True})
    if sidecar is not None:
        containers.append(sidecar[0])
        volumes.extend(sidecar[1])
    config_data = [config_map["data"]]
    if ctx.canary_weight is not None:  # the weight in force reaches the pods by reload, not restart
        config_data = [{CONFIG_FILE: config_file(gateway_config(ctx, spec_weight=True).to_wire())}]
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(ctx.stack, COMPONENT_GATEWAY)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {
                "labels": labels(ctx.stack, COMPONENT_GATEWAY),
                "annotations": {CONFIG_HASH_ANNOTATION: content_hash(config_data, containers)},
            },
            "spec": {
                **service_account(gateway_account(ctx)),
                "securityContext": pod_security(),
                "automountServiceAccountToken": False,
                "containers": containers,
                "volumes": volumes,
            },
        },
    }
    # With an HPA the replica count is the autoscaler's: leaving it out keeps apply from fighting it.
    if spec.gateway.autoscaling is None:
        deployment_spec = {"replicas": spec.gateway.replicas, **deployment_spec}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(ctx, name=name, component=COMPONENT_GATEWAY),
        "spec": deployment_spec,
    }
    out = [config_map, service(ctx, name=name, component=COMPONENT_GATEWAY, ports=[("http", GATEWAY_PORT)]),
           deployment]
    if spec.gateway.autoscaling is not None:
        out.append(_hpa(ctx, name))
    return out


def _hpa(ctx: RenderContext, name: str) -> Manifest:
    scaling = ctx.stack.spec.gateway.autoscaling
    assert scaling is not None
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(ctx, name=name, component=COMPONENT_GATEWAY),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": scaling.target_cpu_utilization},
            }}],
        },
    }


def _check_env_names(config: GatewayConfig, provided: set[str]) -> None:
    """Fail loudly if the config names a secret env var the pod would not have."""
    wanted = set(_env_names(config.model_dump(mode="json")))  # python names: keys end in _env
    missing = wanted - provided
    if missing:
        raise AssertionError(f"gateway config names env vars with no secretKeyRef: {sorted(missing)}")


def _env_names(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k.endswith("_env") and isinstance(v, str)]
        return found + [n for v in node.values() for n in _env_names(v)]
    if isinstance(node, list):
        return [n for v in node for n in _env_names(v)]
    return []
