"""The model layer (render/model.py): the vLLM Deployment, its GPU placement and probes, and the model
cache: one shared volume or one per pod, and the pull (a Job, or each pod's init container)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from aistack.api.conventions import GPU_TYPE_LABEL
from aistack.api.manifests import ManifestError
from aistack.api.model_cache import PullExit
from aistack.operator.render import render

NO_PULL = {"spec": {"model": {"vllm": {"replicas": 1, "cache": {"prePull": False}}}}}
MODEL = ("Deployment", "support-copilot-model")
CLAIM = ("PersistentVolumeClaim", "support-copilot-model-cache")


def cache(**fields: Any) -> dict[str, Any]:
    return {"spec": {"model": {"vllm": {"cache": {"size": "60Gi", "storageClassName": "efs", **fields}}}}}


def test_vllm_args_from_typed_fields_then_extra_args(make_stack, by_kind_name) -> None:
    stack = make_stack("production", {"spec": {"model": {"vllm": {
        "gpu": {"count": 4}, "tensorParallelSize": 2, "cache": {"prePull": False}}}}})
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


def test_vllm_defaults_tp_to_gpu_count_and_omits_unset_max_len(make_stack, by_kind_name) -> None:
    stack = make_stack("production",
                       {"spec": {"model": {"vllm": {"gpu": {"count": 2}, "maxModelLen": None}}}})
    args = by_kind_name(
        render(stack).manifests)[("Deployment", "support-copilot-model")]["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert "--max-model-len" not in args


def test_vllm_gpu_limits_node_selector_tolerations(make_stack, by_kind_name) -> None:
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


def test_vllm_without_gpu_type_has_no_node_selector(make_stack, by_kind_name) -> None:
    stack = make_stack("production", {"spec": {"model": {"vllm": {"gpu": {"count": 1, "type": None}}}}})
    pod = by_kind_name(
        render(stack).manifests)[("Deployment", "support-copilot-model")]["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod


def test_vllm_cache_shm_token_and_probes(make_stack, by_kind_name) -> None:
    manifests = by_kind_name(render(make_stack("production", NO_PULL)).manifests)
    pvc = manifests[CLAIM]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]  # one replica: one volume, kept
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


def test_replicas_on_block_storage_get_a_volume_each_and_pull_in_an_init_container(make_stack,
                                                                                  by_kind_name) -> None:
    rendered = render(make_stack("production"))  # 2 replicas, gp3 (ReadWriteOnce), prePull
    manifests = by_kind_name(rendered.manifests)
    assert CLAIM not in manifests and rendered.pull_job is None
    pod = manifests[MODEL]["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "model-cache"]
    assert volume["ephemeral"]["volumeClaimTemplate"]["spec"] == {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "60Gi"}},
        "storageClassName": "gp3"}
    [pull] = pod["initContainers"]
    assert pull["args"] == ["engine", "pull", "Qwen/Qwen2.5-7B-Instruct", "--source", "hub", "--dest",
                            "/model-cache/models/Qwen--Qwen2.5-7B-Instruct", "--token-env", "HF_TOKEN"]
    assert {"name": "model-cache", "mountPath": "/model-cache"} in pull["volumeMounts"]
    assert {e["name"]: e for e in pull["env"]}["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    vllm = pod["containers"][0]
    assert vllm["args"][:2] == ["--model", "/model-cache/models/Qwen--Qwen2.5-7B-Instruct"]
    env = {e["name"]: e for e in vllm["env"]}
    assert env["HF_HUB_OFFLINE"]["value"] == "1" and "HF_TOKEN" not in env  # the pull had the token

    unpulled = by_kind_name(render(make_stack("production", cache(prePull=False))).manifests)[MODEL]
    assert "initContainers" not in unpulled["spec"]["template"]["spec"]
    assert unpulled["spec"]["template"]["spec"]["containers"][0]["args"][1] == "Qwen/Qwen2.5-7B-Instruct"


def test_a_shared_cache_is_pulled_by_a_job_that_the_model_waits_for(make_stack, by_kind_name) -> None:
    rendered = render(make_stack("production", cache(accessMode="ReadWriteMany", prePull=True)))
    manifests = by_kind_name(rendered.manifests)
    assert manifests[CLAIM]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert rendered.pull_job is not None and rendered.pull_job[1].startswith("support-copilot-model-pull-")
    job = manifests[rendered.pull_job]
    spec = job["spec"]["template"]["spec"]
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "model-cache"
    assert spec["volumes"][0] == {"name": "model-cache",
                                  "persistentVolumeClaim": {"claimName": "support-copilot-model-cache"}}
    assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    [rule] = job["spec"]["podFailurePolicy"]["rules"]
    assert rule["onExitCodes"] == {"containerName": "pull", "operator": "NotIn",
                                   "values": [int(PullExit.CACHED), int(PullExit.UNREACHABLE)]}
    pod = manifests[MODEL]["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert pod["volumes"][0] == {"name": "model-cache",
                                 "persistentVolumeClaim": {"claimName": "support-copilot-model-cache"}}

    # an S3 mirror: read as the gateway's account (IRSA), no Hugging Face token
    irsa = cache(accessMode="ReadWriteMany", prePull=True, source="s3://weights/qwen")
    irsa["spec"]["gateway"] = {"serviceAccountName": "support-copilot-gateway"}
    mirrored = render(make_stack("production", irsa))
    assert mirrored.pull_job != rendered.pull_job  # what it pulls changed: a new Job
    mirror_spec = by_kind_name(mirrored.manifests)[mirrored.pull_job]["spec"]["template"]["spec"]
    assert mirror_spec["serviceAccountName"] == "support-copilot-gateway"
    assert mirror_spec["containers"][0]["args"][3:5] == ["--source", "s3://weights/qwen"]
    assert all("valueFrom" not in e for e in mirror_spec["containers"][0]["env"])
    # a bigger volume is a new try of a failed pull
    bigger = render(make_stack("production", cache(accessMode="ReadWriteMany", prePull=True, size="120Gi")))
    assert bigger.pull_job != rendered.pull_job


@pytest.mark.parametrize(("fields", "message"), [
    ({"source": "s3://weights/qwen", "prePull": False},
     "cache.source: 's3://weights/qwen' needs prePull: true"),
    ({"source": "https://example.com/qwen", "prePull": True}, "cache.source"),
    ({"accessMode": "ReadWriteOncePod"}, "cache.accessMode"),
])
def test_bad_cache_settings_name_the_field(make_stack, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError) as refused:
        make_stack("production", cache(**fields))
    assert message in str(refused.value), str(refused.value)


def test_the_gateway_routes_over_the_replicas_of_a_headless_service(make_stack, by_kind_name) -> None:
    stack = make_stack("production", {"spec": {"model": {"vllm": {"routing": {"policy": "least-busy"}}}}})
    manifests = by_kind_name(render(stack).manifests)
    headless = manifests[("Service", "support-copilot-model-replicas")]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == manifests[MODEL]["spec"]["selector"]["matchLabels"]
    config = yaml.safe_load(manifests[("ConfigMap", "support-copilot-gateway-config")]["data"]["config.yaml"])
    assert config["model"]["primary"]["replicas"] == {
        "policy": "least-busy", "dnsName": "support-copilot-model-replicas.ai-prod.svc.cluster.local",
        "port": 8000, "urls": [], "refreshSeconds": 1.0}
    with pytest.raises(ManifestError, match="routing.policy"):
        make_stack("production", {"spec": {"model": {"vllm": {"routing": {"policy": "random"}}}}})
