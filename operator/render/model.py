"""Layer 2: the self-hosted model as a vLLM Deployment, its Service and its weight cache.

`provider: openai` renders nothing here: the gateway calls the API directly, with the key
wired in from its Secret by the gateway render.
"""

from __future__ import annotations

from typing import Any

from aistack.api import resources as default_resources
from aistack.api.conventions import (
    COMPONENT_MODEL,
    CONFIG_HASH_ANNOTATION,
    GPU_RESOURCE,
    GPU_TAINT_KEY,
    GPU_TYPE_LABEL,
    VLLM_PORT,
)
from aistack.api.engine import server_args
from aistack.api.v1alpha1 import VllmSpec
from aistack.operator.render.common import (
    Manifest,
    RenderContext,
    container_security,
    content_hash,
    http_probe,
    labels,
    metadata,
    pod_security,
    pvc,
    resources,
    secret_env,
    selector_labels,
    service,
)
from aistack.operator.render.endpoints import model_name

CACHE_PATH = "/model-cache"
# Large weights download on first start: allow 30 minutes before liveness applies.
STARTUP_PERIOD_SECONDS = 10
STARTUP_FAILURES = 180
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"


def cluster_placement(vllm: VllmSpec) -> list[str]:
    """What the pod adds to the engine contract (`aistack.api.engine.server_args`): parallelism,
    GPU memory, and where to listen."""
    return [
        "--tensor-parallel-size", str(vllm.effective_tensor_parallel_size),
        "--gpu-memory-utilization", str(vllm.gpu_memory_utilization),
        "--host", "0.0.0.0",
        "--port", str(VLLM_PORT),
    ]


def render_model(ctx: RenderContext) -> list[Manifest]:
    name = model_name(ctx)
    if name is None:
        return []
    vllm = ctx.stack.spec.model.vllm
    assert vllm is not None  # ModelSpec fills the defaults for provider vllm
    cache_name = ctx.name("model-cache")
    container = _container(ctx, vllm)
    pod_spec = {
        "securityContext": pod_security(),
        "automountServiceAccountToken": False,  # vLLM never calls the Kubernetes API
        "containers": [container],
        "volumes": [
            {"name": "model-cache", "persistentVolumeClaim": {"claimName": cache_name}},
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            {"name": "tmp", "emptyDir": {}},
        ],
        "nodeSelector": _node_selector(vllm),
        "tolerations": _tolerations(vllm),
        "terminationGracePeriodSeconds": 60,
    }
    if not pod_spec["nodeSelector"]:
        del pod_spec["nodeSelector"]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(ctx, name=name, component=COMPONENT_MODEL),
        "spec": {
            "replicas": vllm.replicas,
            # A GPU pod cannot surge onto a node whose GPUs the old pod holds.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector_labels(ctx.stack, COMPONENT_MODEL)},
            "template": {
                "metadata": {
                    "labels": labels(ctx.stack, COMPONENT_MODEL),
                    # Karpenter would otherwise consolidate a GPU node while the pod still
                    # pulls a 10 GB image or loads weights (minutes lost per disruption).
                    "annotations": {CONFIG_HASH_ANNOTATION: content_hash(container), DO_NOT_DISRUPT: "true"},
                },
                "spec": pod_spec,
            },
        },
    }
    return [
        pvc(ctx, name=cache_name, component=COMPONENT_MODEL, size=vllm.cache.size,
            storage_class=vllm.cache.storage_class_name),
        service(ctx, name=name, component=COMPONENT_MODEL, ports=[("http", VLLM_PORT)]),
        deployment,
    ]


def _container(ctx: RenderContext, vllm: VllmSpec) -> dict[str, Any]:
    model = ctx.stack.spec.model
    env: list[dict[str, Any]] = [
        {"name": "HF_HOME", "value": f"{CACHE_PATH}/huggingface"},
        {"name": "HOME", "value": "/tmp"},
    ]
    if vllm.hf_token_secret_ref is not None:
        env.append(secret_env("HF_TOKEN", vllm.hf_token_secret_ref))
    return {
        "name": "vllm",
        "image": vllm.image,
        "args": server_args(model, placement=cluster_placement(vllm)),
        "env": env,
        "ports": [{"name": "http", "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "resources": resources(vllm.resources, default_resources.VLLM,
                               extra_limits={GPU_RESOURCE: str(vllm.gpu.count)}),
        "startupProbe": http_probe("/health", "http", period=STARTUP_PERIOD_SECONDS,
                                   failures=STARTUP_FAILURES),
        "readinessProbe": http_probe("/health", "http", period=5, failures=3),
        "livenessProbe": http_probe("/health", "http", period=15, failures=4, timeout=5),
        "volumeMounts": [
            {"name": "model-cache", "mountPath": CACHE_PATH},
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        # vLLM compiles kernels into its own package and cache folders at start.
        "securityContext": container_security(read_only_root=False),
    }


def _node_selector(vllm: VllmSpec) -> dict[str, str]:
    selector = dict(vllm.gpu.node_selector)
    if vllm.gpu.type:
        selector[GPU_TYPE_LABEL] = vllm.gpu.type
    return dict(sorted(selector.items()))


def _tolerations(vllm: VllmSpec) -> list[dict[str, Any]]:
    tolerations = [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
    for t in vllm.gpu.tolerations:
        tolerations.append(t.model_dump(mode="json", exclude_none=True))
    return tolerations
