"""Render functions: what each layer produces, and the guarantees every object carries."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from aistack.api.conventions import (
    CONFIG_HASH_ANNOTATION,
    GPU_TYPE_LABEL,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
)
from aistack.api.gateway_config import GatewayConfig
from aistack.api.images import package_version
from aistack.api.v1alpha1.stack import _SECRET_VALUES
from aistack.operator.render import KIND_ORDER, render

UID = "0b6f0c5e-0000-4000-8000-000000000001"
VERSION = "9.9.9"


def by_kind_name(manifests: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


def pod_specs(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["spec"]["template"]["spec"] for m in manifests if m["kind"] in ("Deployment", "StatefulSet",
                                                                              "Job")]


def containers(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for spec in pod_specs(manifests) for c in spec["containers"]]


# A stack that references a Secret from every field that can hold one.
ALL_SECRETS = {
    "spec": {
        "model": {"fallback": {"baseUrl": "https://fallback.example.com/v1", "model": "m",
                               "apiKeySecretRef": {"name": "fb", "key": "k1"}}},
        "retrieval": {"vectorStore": {"managed": None, "external": {
            "url": "https://qdrant.example.com", "apiKeySecretRef": {"name": "qd", "key": "k2"}}},
            "embedder": {"provider": "openai", "model": "text-embedding-3-small",
                         "baseUrl": "https://emb.example.com/v1",
                         "apiKeySecretRef": {"name": "emb", "key": "k3"}}},
        "orchestration": {"tools": [{"name": "t", "description": "d", "endpoint": "https://t.example.com",
                                     "authSecretRef": {"name": "tool", "key": "k4"}}]},
        "observability": {"mlflow": {"managed": None, "external": {
            "trackingUri": "https://mlflow.example.com", "tokenSecretRef": {"name": "ml", "key": "k5"}}}},
    },
}
LITERAL_ENV_ALLOWED = {"HOME", "HF_HOME", "AISTACK_GATEWAY_CONFIG", "QDRANT__TELEMETRY_DISABLED",
                       "HF_HUB_OFFLINE"}


@pytest.mark.parametrize("name", ["quickstart", "rag", "production"])
def test_every_object_has_labels_owner_and_namespace(make_stack, name: str) -> None:
    stack = make_stack(name, uid=UID)
    for m in render(stack, version=VERSION).manifests:
        meta = m["metadata"]
        assert meta["namespace"] == stack.namespace
        assert meta["labels"][LABEL_NAME] == "aistack"
        assert meta["labels"][LABEL_INSTANCE] == stack.name
        assert meta["labels"][LABEL_PART_OF] == "aistack"
        assert meta["labels"][LABEL_MANAGED_BY] == "aistack-operator"
        assert meta["labels"][LABEL_COMPONENT]
        if m["kind"] == "PersistentVolumeClaim" and meta["name"].endswith("-mlflow-data"):
            assert "ownerReferences" not in meta  # runs outlive the stack
            continue
        assert meta["ownerReferences"] == [{"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack",
                                            "name": stack.name, "uid": UID, "controller": True,
                                            "blockOwnerDeletion": True}]


def test_without_uid_no_owner_references(make_stack) -> None:
    assert all("ownerReferences" not in m["metadata"] for m in render(make_stack("production")).manifests)


@pytest.mark.parametrize("name", ["quickstart", "rag", "production"])
def test_render_is_deterministic_and_ordered(make_stack, name: str) -> None:
    first = render(make_stack(name), version=VERSION).manifests
    assert first == render(make_stack(name), version=VERSION).manifests
    keys = [(KIND_ORDER.index(m["kind"]), m["metadata"]["name"]) for m in first]
    assert keys == sorted(keys)
    assert len({(m["kind"], m["metadata"]["name"]) for m in first}) == len(first)


@pytest.mark.parametrize("name", ["quickstart", "rag", "production"])
def test_manifests_pass_kubernetes_schema(make_stack, name: str) -> None:
    for m in render(make_stack(name, uid=UID), version=VERSION).manifests:
        kubernetes_validate.validate(m, "1.32", strict=True)


@pytest.mark.parametrize("name", ["quickstart", "rag", "production"])
def test_pods_run_non_root_and_selectors_match(make_stack, name: str) -> None:
    for m in render(make_stack(name), version=VERSION).manifests:
        if m["kind"] not in ("Deployment", "StatefulSet"):
            continue
        template = m["spec"]["template"]
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
        assert CONFIG_HASH_ANNOTATION in template["metadata"]["annotations"]
        selector = m["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items()
        for c in template["spec"]["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for m in render(make_stack(name), version=VERSION).manifests:
        if m["kind"] == "Service":
            workload = [w for w in render(make_stack(name), version=VERSION).manifests
                        if w["kind"] in ("Deployment", "StatefulSet")
                        and w["metadata"]["name"] == m["metadata"]["name"]]
            assert workload, f"Service {m['metadata']['name']} selects no workload"
            assert m["spec"]["selector"] == workload[0]["spec"]["selector"]["matchLabels"]


def test_vllm_args_from_typed_fields_then_extra_args(make_stack) -> None:
    stack = make_stack("production",
                       {"spec": {"model": {"vllm": {"gpu": {"count": 4}, "tensorParallelSize": 2}}}})
    vllm = by_kind_name(render(stack).manifests)[("Deployment", "support-copilot-model")]
    args = vllm["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = dict(zip(args[:-1:2], args[1::2], strict=False))
    assert flags["--model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert flags["--served-model-name"] == "qwen2.5-7b-instruct"
    assert flags["--tensor-parallel-size"] == "2"
    assert flags["--max-model-len"] == "16384"
    assert flags["--gpu-memory-utilization"] == "0.9"
    assert flags["--port"] == "8000"
    assert args[-1] == "--enable-prefix-caching"


def test_vllm_defaults_tp_to_gpu_count_and_omits_unset_max_len(make_stack) -> None:
    stack = make_stack("production",
                       {"spec": {"model": {"vllm": {"gpu": {"count": 2}, "maxModelLen": None}}}})
    args = by_kind_name(
        render(stack).manifests)[("Deployment", "support-copilot-model")]["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert "--max-model-len" not in args


def test_vllm_gpu_limits_node_selector_tolerations(make_stack) -> None:
    stack = make_stack("production", {"spec": {"model": {"vllm": {"gpu": {
        "count": 2, "type": "nvidia-h100", "nodeSelector": {"pool": "llm"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm",
                         "effect": "NoSchedule"}]}}}}})
    template = by_kind_name(render(stack).manifests)[("Deployment",
                                                      "support-copilot-model")]["spec"]["template"]
    pod = template["spec"]
    # no consolidation mid-load
    assert template["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["containers"][0]["resources"]["limits"]["memory"] == "32Gi"
    assert pod["nodeSelector"] == {GPU_TYPE_LABEL: "nvidia-h100", "pool": "llm"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "llm",
            "effect": "NoSchedule"} in pod["tolerations"]


def test_vllm_without_gpu_type_has_no_node_selector(make_stack) -> None:
    stack = make_stack("production", {"spec": {"model": {"vllm": {"gpu": {"count": 1, "type": None}}}}})
    pod = by_kind_name(
        render(stack).manifests)[("Deployment", "support-copilot-model")]["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod


def test_vllm_cache_shm_token_and_probes(make_stack) -> None:
    manifests = by_kind_name(render(make_stack("production")).manifests)
    pvc = manifests[("PersistentVolumeClaim", "support-copilot-model-cache")]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "60Gi"
    assert pvc["spec"]["storageClassName"] == "gp3"
    pod = manifests[("Deployment", "support-copilot-model")]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf-token", "key": "token"}}
    assert env["HF_HOME"]["value"].startswith("/model-cache")
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 20 * 60  # large downloads
    service = manifests[("Service", "support-copilot-model")]
    assert service["spec"]["ports"][0]["port"] == 8000


def test_openai_provider_renders_no_model_server(make_stack) -> None:
    kinds = {(m["kind"], m["metadata"]["name"]) for m in render(make_stack("quickstart")).manifests}
    assert kinds == {("ConfigMap", "quickstart-gateway-config"), ("Service", "quickstart-gateway"),
                     ("Deployment", "quickstart-gateway")}


def test_gateway_config_map_holds_the_gateway_config(make_stack) -> None:
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


def test_gateway_image_override(make_stack) -> None:
    stack = make_stack("quickstart", {"spec": {"gateway": {"image": "registry.example.com/rt:1"}}})
    gateway = by_kind_name(render(stack).manifests)[("Deployment", "quickstart-gateway")]
    assert gateway["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/rt:1"


def test_hpa_owns_replicas_when_autoscaling(make_stack) -> None:
    manifests = by_kind_name(render(make_stack("production")).manifests)
    assert "replicas" not in manifests[("Deployment", "support-copilot-gateway")]["spec"]
    hpa = manifests[("HorizontalPodAutoscaler", "support-copilot-gateway")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    fixed = by_kind_name(render(make_stack("production",
                                           {"spec": {"gateway": {"autoscaling": None}}})).manifests)
    assert fixed[("Deployment", "support-copilot-gateway")]["spec"]["replicas"] == 2
    assert ("HorizontalPodAutoscaler", "support-copilot-gateway") not in fixed


def test_every_secret_is_a_secret_key_ref_and_never_a_literal(make_stack) -> None:
    stack = make_stack("production", ALL_SECRETS)
    manifests = render(stack).manifests
    text = yaml.safe_dump_all(manifests)
    assert not _SECRET_VALUES.search(text)
    refs = {}
    for c in containers(manifests):
        for e in c.get("env", []):
            if "valueFrom" in e:
                ref = e["valueFrom"]["secretKeyRef"]
                refs[(ref["name"], ref["key"])] = e["name"]
            elif e["name"] == "OPENAI_API_KEY":
                assert e["value"] == "EMPTY"  # vLLM in the cluster takes no key
            elif e["name"] == "MLFLOW_TRACKING_TOKEN":
                assert e["value"] == "$(AISTACK_SECRET_ML_K5)"  # expanded by the kubelet
            else:
                assert e["name"] in LITERAL_ENV_ALLOWED, e
    expected = {("fb", "k1"), ("qd", "k2"), ("emb", "k3"), ("tool", "k4"), ("ml", "k5"),
                ("hf-token", "token"),
                ("support-copilot-keys", "keys")}
    assert expected <= refs.keys()
    assert refs[("qd", "k2")] == "AISTACK_SECRET_QD_K2"
    # The gateway config names each of its secrets by the env var the pod fills.
    config = by_kind_name(manifests)[("ConfigMap", "support-copilot-gateway-config")]["data"]["config.yaml"]
    for env_name in ("AISTACK_SECRET_FB_K1", "AISTACK_SECRET_QD_K2", "AISTACK_SECRET_EMB_K3",
                     "AISTACK_SECRET_TOOL_K4", "AISTACK_SECRET_ML_K5"):
        assert env_name in config
    for m in manifests:
        if m["kind"] == "ConfigMap":
            assert "secretKeyRef" not in str(m["data"])
    # The Jobs get exactly the secrets they use, by the same env names, and never as args.
    jobs = {m["metadata"]["labels"][LABEL_COMPONENT]: m["spec"]["template"]["spec"]["containers"][0]
            for m in manifests if m["kind"] == "Job"}
    secret_envs = {k: {e["name"] for e in c["env"] if "valueFrom" in e} for k, c in jobs.items()}
    assert secret_envs == {"ingestion": {"AISTACK_SECRET_EMB_K3", "AISTACK_SECRET_QD_K2"},
                           "evaluation": {"AISTACK_SECRET_ML_K5", "AISTACK_SECRET_SUPPORT_COPILOT_KEYS_KEYS"}}
    # The manifest ConfigMap holds Secret references (names), nothing read from a Secret.
    manifest = by_kind_name(manifests)[("ConfigMap", "support-copilot-manifest")]["data"]["aistack.yaml"]
    assert "tokenSecretRef" in manifest and "valueFrom" not in manifest


def test_mlflow_secret_backend_is_expanded_by_kubelet_not_rendered(make_stack) -> None:
    manifests = by_kind_name(render(make_stack("production")).manifests)
    c = manifests[("Deployment", "support-copilot-mlflow")]["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][c["args"].index("--backend-store-uri") + 1] == "$(MLFLOW_BACKEND_STORE_URI)"
    assert ("PersistentVolumeClaim", "support-copilot-mlflow-data") not in manifests  # s3 + external DB


def test_mlflow_local_store_gets_a_volume(make_stack) -> None:
    manifests = by_kind_name(render(make_stack("rag")).manifests)
    c = manifests[("Deployment", "docs-assistant-mlflow")]["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][c["args"].index("--backend-store-uri") + 1].startswith("sqlite:////mlflow/")
    assert manifests[("PersistentVolumeClaim", "docs-assistant-mlflow-data")]["spec"]["resources"] == {
        "requests": {"storage": "10Gi"}}


def test_cloud_roles_come_through_named_service_accounts_and_no_api_token_is_mounted(make_stack) -> None:
    """IRSA: the gateway and the ingestion Job (which reads the `s3://` sources) run as the
    gateway's account, MLflow (which writes the `s3://` artifacts) as its own; the evaluation
    Job needs no cloud access. No pod gets a Kubernetes API token."""
    plain = render(make_stack("production")).manifests
    assert all("serviceAccountName" not in pod for pod in pod_specs(plain))
    manifests = render(make_stack("production", {"spec": {
        "gateway": {"serviceAccountName": "aistack-gateway"},
        "observability": {"mlflow": {"managed": {"serviceAccountName": "aistack-tracking"}}}}})).manifests
    accounts = {(m["kind"], m["metadata"]["labels"][LABEL_COMPONENT]): m["spec"]["template"]["spec"].get(
        "serviceAccountName") for m in manifests if m["kind"] in ("Deployment", "StatefulSet", "Job")}
    assert accounts[("Deployment", "gateway")] == "aistack-gateway"
    assert accounts[("Job", "ingestion")] == "aistack-gateway"
    assert accounts[("Deployment", "tracking")] == "aistack-tracking"
    assert accounts[("Job", "evaluation")] is None
    assert all(pod.get("automountServiceAccountToken") is False for pod in pod_specs(manifests)
               if "serviceAccountName" in pod)


def test_external_stores_render_no_servers(make_stack) -> None:
    manifests = by_kind_name(render(make_stack("production", ALL_SECRETS)).manifests)
    assert not [k for k in manifests if k[0] == "StatefulSet" or k[1].endswith("-mlflow")]


def test_qdrant_statefulset_keeps_volumes(make_stack) -> None:
    sts = by_kind_name(render(make_stack("production")).manifests)[("StatefulSet",
                                                                    "support-copilot-vector-store")]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "50Gi"
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_guardrails_sidecar_only_for_llm_rails(make_stack) -> None:
    fast = make_stack("rag", {"spec": {"guardrails": {"input": ["max_length"], "output": ["pii_mask"]}}})
    manifests = by_kind_name(render(fast).manifests)
    gateway = manifests[("Deployment", "docs-assistant-gateway")]["spec"]["template"]["spec"]
    assert [c["name"] for c in gateway["containers"]] == ["gateway"]

    manifests = by_kind_name(render(make_stack("rag")).manifests)
    gateway = manifests[("Deployment", "docs-assistant-gateway")]["spec"]["template"]["spec"]
    sidecar = gateway["containers"][1]
    assert sidecar["name"] == "guardrails"
    assert sidecar["command"] == ["python", "-m", "aistack.runtime.guardrails.sidecar"]
    assert sidecar["args"] == ["--port", "8001"]
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["AISTACK_SECRET_OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "openai",
                                                                                 "key": "api-key"}
    assert env["AISTACK_GATEWAY_CONFIG"]["value"] == "/etc/aistack/gateway/config.yaml"
    assert env["HF_HUB_OFFLINE"]["value"] == "1"
    assert {"name": "config",
            "mountPath": "/etc/aistack/gateway", "readOnly": True} in sidecar["volumeMounts"]
    assert "exec" in sidecar["livenessProbe"] and "ports" not in sidecar  # loopback only, off the Service


def test_sidecar_builds_an_offline_nemo_config_from_the_rendered_gateway_config(make_stack) -> None:
    """What the sidecar will serve, computed from exactly what the operator renders."""
    from aistack.api.gateway_config import GatewayConfig
    from aistack.runtime.guardrails.nemo_config import nemo_config

    manifests = by_kind_name(render(make_stack("rag")).manifests)
    data = manifests[("ConfigMap", "docs-assistant-gateway-config")]["data"]
    config = GatewayConfig.model_validate(yaml.safe_load(next(iter(data.values()))))
    nemo = nemo_config(config)
    assert nemo["rails"] == {"input": {"flows": ["self check input"]},
                             "output": {"flows": ["self check output"]}}
    main, embeddings = nemo["models"]
    assert main["parameters"]["base_url"] == "https://api.openai.com/v1"
    assert main["api_key_env_var"] == "AISTACK_SECRET_OPENAI_API_KEY"
    assert embeddings["engine"] == "SentenceTransformers"  # never a hub download in the pod
    assert {p["task"] for p in nemo["prompts"]} == {"self_check_input", "self_check_output"}


def test_guardrails_user_config_map_is_mounted_not_generated(make_stack) -> None:
    stack = make_stack("rag", {"spec": {"guardrails": {"configMapRef": {"name": "my-rails"}}}})
    manifests = by_kind_name(render(stack).manifests)
    spec = manifests[("Deployment", "docs-assistant-gateway")]["spec"]["template"]["spec"]
    assert {"name": "guardrails-config", "configMap": {"name": "my-rails"}} in spec["volumes"]
    sidecar = spec["containers"][1]
    assert sidecar["args"][-4:] == ["--nemo-config", "/etc/aistack/nemo", "--config-id", "aistack"]
    assert {"name": "guardrails-config", "mountPath": "/etc/aistack/nemo/aistack", "readOnly": True} in \
        sidecar["volumeMounts"]


def _hash(manifests: list[dict[str, Any]], name: str) -> str:
    return by_kind_name(manifests)[("Deployment", name)]["spec"]["template"]["metadata"]["annotations"][
        CONFIG_HASH_ANNOTATION]


def test_config_change_rolls_gateway_but_not_model(make_stack) -> None:
    before = render(make_stack("production")).manifests
    after = render(make_stack("production",
                              {"spec": {"orchestration": {"systemPrompt": "Be brief."}}})).manifests
    assert _hash(before, "support-copilot-gateway") != _hash(after, "support-copilot-gateway")
    assert _hash(before, "support-copilot-model") == _hash(after, "support-copilot-model")
    args = render(make_stack("production", {"spec": {"model": {"vllm": {"extraArgs": []}}}})).manifests
    assert _hash(before, "support-copilot-model") != _hash(args, "support-copilot-model")


def test_names_fit_dns_labels(make_stack) -> None:
    long_name = "a" + "b" * 39
    stack = make_stack("production", {"metadata": {"name": long_name}})
    for m in render(stack).manifests:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", m["metadata"]["name"])
        assert len(m["metadata"]["name"]) <= 63
