"""The model's autoscaling in the render (render/scaling.py, and what it changes in the model and gateway):
the built-in autoscaler's load Lease and the gateway's one right on it, or a KEDA ScaledObject."""

from __future__ import annotations

from typing import Any

from aistack.api.gateway_config import GatewayConfig
from aistack.operator.render import render

MODEL = ("Deployment", "support-copilot-model")
GATEWAY = ("Deployment", "support-copilot-gateway")


def autoscaling(**fields: Any) -> dict[str, Any]:
    return {"spec": {"model": {"vllm": {"replicas": None, "autoscaling": {"maxReplicas": 4, **fields}}}}}


def gateway_config(manifests: dict[tuple[str, str], dict[str, Any]]) -> GatewayConfig:
    import yaml

    data = manifests[("ConfigMap", "support-copilot-gateway-config")]["data"]
    return GatewayConfig.model_validate(yaml.safe_load(next(iter(data.values()))))


def test_builtin_gives_the_gateway_patch_on_its_one_lease(make_stack, by_kind_name) -> None:
    rendered = render(make_stack("production", autoscaling(minReplicas=0, holdSeconds=90)))
    manifests = by_kind_name(rendered.manifests)
    assert rendered.load_lease == ("Lease", "support-copilot-model-load")
    assert manifests[("Lease", "support-copilot-model-load")]["spec"] == {}
    role = manifests[("Role", "support-copilot-gateway-load")]
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "resourceNames": ["support-copilot-model-load"], "verbs": ["patch"]}]
    binding = manifests[("RoleBinding", "support-copilot-gateway-load")]
    assert binding["roleRef"]["name"] == "support-copilot-gateway-load"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "support-copilot-gateway",
                                    "namespace": "ai-prod"}]
    account = manifests[("ServiceAccount", "support-copilot-gateway")]
    assert account["automountServiceAccountToken"] is False
    pod = manifests[GATEWAY]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "support-copilot-gateway"
    assert pod["automountServiceAccountToken"] is False
    mounts = {c["name"]: [m["name"] for m in c["volumeMounts"]] for c in pod["containers"]}
    assert [n for n, m in mounts.items() if "kube-api-access" in m] == ["gateway"]  # not the sidecar
    assert "replicas" not in manifests[MODEL]["spec"]
    scaling = gateway_config(manifests).model.scaling
    assert scaling is not None
    assert (scaling.report_lease, scaling.hold_seconds, scaling.target_requests) == (
        "support-copilot-model-load", 90, 8)


def test_a_named_gateway_account_is_bound_not_created(make_stack, by_kind_name) -> None:
    patch = autoscaling()
    patch["spec"]["gateway"] = {"serviceAccountName": "copilot-s3"}
    manifests = by_kind_name(render(make_stack("production", patch)).manifests)
    assert not [k for k in manifests if k[0] == "ServiceAccount"]
    binding = manifests[("RoleBinding", "support-copilot-gateway-load")]
    assert binding["subjects"][0]["name"] == "copilot-s3"
    assert manifests[GATEWAY]["spec"]["template"]["spec"]["serviceAccountName"] == "copilot-s3"
    assert gateway_config(manifests).model.scaling.hold_seconds is None  # minReplicas 1: never at zero


def test_keda_renders_a_scaled_object_and_no_lease(make_stack, by_kind_name) -> None:
    stack = make_stack("production", autoscaling(engine="keda", minReplicas=0, targetRequests=6,
                                                  idleSeconds=600, scaleDownDelaySeconds=120,
                                                  prometheusUrl="http://prometheus.monitoring:9090/"))
    rendered = render(stack)
    manifests = by_kind_name(rendered.manifests)
    assert rendered.load_lease is None
    assert not [k for k in manifests if k[0] in ("Lease", "Role", "RoleBinding", "ServiceAccount")]
    scaled = manifests[("ScaledObject", "support-copilot-model")]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": "support-copilot-model"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["cooldownPeriod"]) == (0, 4, 600)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"] == {
        "stabilizationWindowSeconds": 120}
    [trigger] = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"] == {
        "serverAddress": "http://prometheus.monitoring:9090",
        "query": 'sum(aistack_gateway_model_demand{stack="support-copilot",stack_namespace="ai-prod"}) '
                 "or vector(0)",
        "threshold": "6", "activationThreshold": "0"}
    assert "replicas" not in manifests[MODEL]["spec"]
    pod = manifests[GATEWAY]["spec"]["template"]["spec"]
    assert "serviceAccountName" not in pod
    assert all(v["name"] != "kube-api-access" for v in pod["volumes"])
    scaling = gateway_config(manifests).model.scaling
    assert scaling is not None and scaling.report_lease is None and scaling.hold_seconds == 180


def test_without_autoscaling_nothing_scales_and_the_count_is_pinned(make_stack, by_kind_name) -> None:
    rendered = render(make_stack("production"))
    manifests = by_kind_name(rendered.manifests)
    assert rendered.load_lease is None
    scaling_kinds = ("Lease", "Role", "RoleBinding", "ServiceAccount", "ScaledObject")
    assert not [k for k in manifests if k[0] in scaling_kinds]
    assert manifests[MODEL]["spec"]["replicas"] == 2
    assert gateway_config(manifests).model.scaling is None
