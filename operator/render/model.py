"""Layer 2: the self-hosted model as a vLLM Deployment, its Service and its weight cache.

`provider: openai` renders nothing here: the gateway calls the API directly, with the key
wired in from its Secret by the gateway render.

The model cache (`spec.model.vllm.cache`): where the volume is shared (`ReadWriteMany`, or one
replica) it is one PersistentVolumeClaim, kept across restarts; a `ReadWriteOnce` volume cannot
attach to the nodes of several replicas, so then each pod gets a volume of its own (a generic
ephemeral volume: created and deleted with the pod). With `prePull`, the weights are pulled
(`aistack engine pull`, `aistack.api.model_cache`) before vLLM starts, and vLLM loads the pulled
folder with the hub offline: into a shared volume by a Job that the operator runs before it
creates (or changes) the model's Deployment, so GPU pods never wait on a download; into per-pod
volumes by an init container of each pod. The Job is named by a hash of what it pulls, so a new
model or source is a new Job and an unchanged one stays done.
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
from aistack.api.model_cache import CACHE_PATH, PullCommand, PullExit, cached_model_dir
from aistack.api.types import SecretKeyRef
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
    resources,
    secret_env,
    selector_labels,
    service,
    service_account,
)
from aistack.operator.render.endpoints import model_name, model_replicas_name

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
    container = _container(ctx, vllm)
    pod_spec = {
        "securityContext": pod_security(),
        "automountServiceAccountToken": False,  # vLLM never calls the Kubernetes API
        **({"initContainers": init} if (init := pull_init_containers(ctx)) else {}),
        "containers": [container],
        "volumes": [
            cache_volume(ctx),
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
            # With autoscaling the count is the autoscaler's (through the scale subresource): left
            # out, so apply never fights it; a new Deployment starts at the API server's default, 1.
            **({} if vllm.autoscaling is not None else {"replicas": vllm.fixed_replicas}),
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
    claim = cache_claim(ctx)
    return [
        *([claim] if claim is not None else []),
        service(ctx, name=name, component=COMPONENT_MODEL, ports=[("http", VLLM_PORT)]),
        _replicas_service(ctx),
        deployment,
    ]


def _replicas_service(ctx: RenderContext) -> Manifest:
    """A headless Service of the same pods: its DNS records are the ready replicas, which the
    gateway resolves to route each request to one of them (`spec.model.vllm.routing`)."""
    name = model_replicas_name(ctx)
    assert name is not None
    headless = service(ctx, name=name, component=COMPONENT_MODEL, ports=[("http", VLLM_PORT)])
    headless["spec"]["clusterIP"] = "None"
    return headless


def _container(ctx: RenderContext, vllm: VllmSpec) -> dict[str, Any]:
    model = ctx.stack.spec.model
    env: list[dict[str, Any]] = [
        {"name": "HF_HOME", "value": f"{CACHE_PATH}/huggingface"},
        {"name": "HOME", "value": "/tmp"},
    ]
    weights = weights_dir(ctx)
    if weights is not None:
        env.append({"name": "HF_HUB_OFFLINE", "value": "1"})  # the pull fetched every file
    elif vllm.hf_token_secret_ref is not None:
        env.append(secret_env("HF_TOKEN", vllm.hf_token_secret_ref))
    return {
        "name": "vllm",
        "image": vllm.image,
        "args": server_args(model, placement=cluster_placement(vllm), weights=weights),
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


def _vllm(ctx: RenderContext) -> VllmSpec:
    vllm = ctx.stack.spec.model.vllm
    assert vllm is not None  # ModelSpec fills the defaults for provider vllm
    return vllm


COMPONENT_MODEL_CACHE = "model-cache"
VOLUME = "model-cache"
PULL_CONTAINER = "pull"
HF_TOKEN_ENV = "HF_TOKEN"
SUFFIX_LENGTH = 10


def is_shared(vllm: VllmSpec) -> bool:
    """One volume for every replica: it can be attached where they all run."""
    return vllm.cache.access_mode == "ReadWriteMany" or vllm.most_replicas <= 1


def claim_name(ctx: RenderContext) -> str:
    return ctx.name("model-cache")


def _claim_spec(vllm: VllmSpec) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": [vllm.cache.access_mode if is_shared(vllm) else "ReadWriteOnce"],
                            "resources": {"requests": {"storage": vllm.cache.size}}}
    if vllm.cache.storage_class_name:
        spec["storageClassName"] = vllm.cache.storage_class_name
    return spec


def cache_claim(ctx: RenderContext) -> Manifest | None:
    """The shared volume's claim; None where each pod has its own."""
    vllm = _vllm(ctx)
    if not is_shared(vllm):
        return None
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": metadata(ctx, name=claim_name(ctx), component=COMPONENT_MODEL),
            "spec": _claim_spec(vllm)}


def cache_volume(ctx: RenderContext) -> dict[str, Any]:
    """The model pods' volume: the shared claim, or a claim per pod made from a template."""
    vllm = _vllm(ctx)
    if is_shared(vllm):
        return {"name": VOLUME, "persistentVolumeClaim": {"claimName": claim_name(ctx)}}
    # unlabelled: these claims belong to their pods (deleted with them), not to the stack's children
    return {"name": VOLUME, "ephemeral": {"volumeClaimTemplate": {"spec": _claim_spec(vllm)}}}


def weights_dir(ctx: RenderContext) -> str | None:
    """The pulled folder vLLM loads (`--model`), with prePull; None when vLLM downloads itself."""
    vllm = _vllm(ctx)
    return cached_model_dir(ctx.stack.spec.model.name) if vllm.cache.pre_pull else None


def pull_container(ctx: RenderContext) -> dict[str, Any]:
    """`aistack engine pull` of the model into the cache, as the Job's container or an init container."""
    vllm = _vllm(ctx)
    model = ctx.stack.spec.model.name
    token: SecretKeyRef | None = vllm.hf_token_secret_ref if vllm.cache.source == "hub" else None
    command = PullCommand(model=model, source=vllm.cache.source, dest=cached_model_dir(model),
                          token_env=HF_TOKEN_ENV if token is not None else None)
    env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}, {"name": "HF_HOME", "value": "/tmp/hf"}]
    if token is not None:
        env.append(secret_env(HF_TOKEN_ENV, token))
    return {
        "name": PULL_CONTAINER,
        "image": ctx.runtime_image,
        "command": ["python", "-m", "aistack.cli"],
        "args": command.args(),
        "env": env,
        "volumeMounts": [{"name": VOLUME, "mountPath": CACHE_PATH}, {"name": "tmp", "mountPath": "/tmp"}],
        # downloads stream file by file: little CPU, memory bounded by the client's buffers
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
        "securityContext": container_security(),
    }


def pull_init_containers(ctx: RenderContext) -> list[dict[str, Any]]:
    """The pull as each model pod's init container: prePull on per-pod volumes."""
    vllm = _vllm(ctx)
    return [pull_container(ctx)] if vllm.cache.pre_pull and not is_shared(vllm) else []


def pull_job(ctx: RenderContext) -> Manifest | None:
    """The Job that fills the shared volume before the model's pods start; None without prePull or
    with per-pod volumes. An S3 mirror is read with the gateway's service account (as the ingestion
    Job reads S3 sources); the Kubernetes API token is not mounted."""
    if ctx.stack.spec.model.provider != "vllm":
        return None
    vllm = _vllm(ctx)
    if not vllm.cache.pre_pull or not is_shared(vllm):
        return None
    container = pull_container(ctx)
    account = ctx.stack.spec.gateway.service_account_name if vllm.cache.source.startswith("s3://") else None
    spec: dict[str, Any] = {
        # a source that cannot be read now is retried (the API default backoffLimit); a volume too
        # small, a model not found, or a bad command line fail at once
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {
                "containerName": PULL_CONTAINER, "operator": "NotIn",
                "values": [int(PullExit.CACHED), int(PullExit.UNREACHABLE)]}},
        ]},
        "template": {
            "metadata": {"labels": labels(ctx.stack, COMPONENT_MODEL_CACHE)},
            "spec": {
                "restartPolicy": "Never",
                **service_account(account),
                "automountServiceAccountToken": False,
                "securityContext": pod_security(),
                "containers": [container],
                "volumes": [{"name": VOLUME, "persistentVolumeClaim": {"claimName": claim_name(ctx)}},
                            {"name": "tmp", "emptyDir": {}}],
            },
        },
    }
    # a new Job (a new try) when what it pulls, or the room it has, changes; a failed Job otherwise
    # stays failed (delete it to retry: the operator creates it again)
    suffix = content_hash(spec, vllm.cache.size)[:SUFFIX_LENGTH]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": metadata(ctx, name=pull_job_name(ctx, suffix), component=COMPONENT_MODEL_CACHE),
            "spec": spec}


def pull_job_name(ctx: RenderContext, suffix: str) -> str:
    return ctx.name(f"model-pull-{suffix}")
