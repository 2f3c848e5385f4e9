"""The model layer (render/model.py): the vLLM Deployment, its GPU placement and probes."""

from __future__ import annotations

from aistack.api.conventions import GPU_TYPE_LABEL
from aistack.operator.render import render


def test_vllm_args_from_typed_fields_then_extra_args(make_stack, by_kind_name) -> None:
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
