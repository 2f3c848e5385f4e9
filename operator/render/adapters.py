"""The model's LoRA adapters in the cluster: the adapter list's ConfigMap and the adapter agent
beside each engine (`aistack.runtime.engine.adapter_agent`).

The list lives in a ConfigMap mounted as a folder (never with subPath, which the kubelet does not
refresh): a changed list reaches the running pods in a kubelet sync (about a minute) and the agent
loads or unloads without a restart. Nothing of the list is in the pod template, so adding or
removing an adapter rolls no pod. The agent pulls remote adapters into the model cache volume with
the base weights' pull: a Hugging Face token from `hfTokenSecretRef`; S3 through the pod's service
account (the gateway's where the spec names one, as the pull Job reads an S3 mirror; else the
stack's own `<stack>-model`), which model pods with LoRA run as.

Each agent reports its adapters' state on the Lease `<stack>-model-adapters` (`aistack.api.adapters`),
the operator's source for `status.model.adapters`: the pods' only right is a Role with `patch` on that
one Lease, and the token is projected into the agent's container alone (vLLM gets none).
"""

from __future__ import annotations

import copy
from typing import Any

from aistack.api.adapters import ADAPTERS, ADAPTERS_CONFIG_DIR, ADAPTERS_FILE, LEASE_COMPONENT, adapter_list
from aistack.api.conventions import COMPONENT_MODEL, VLLM_PORT
from aistack.api.engine import RUNTIME_LORA_ENV
from aistack.api.model_cache import CACHE_PATH, TOKEN_ENV_FLAG
from aistack.api.v1alpha1 import VllmSpec
from aistack.operator.render.common import (
    API_TOKEN_DIR,
    API_TOKEN_VOLUME,
    Manifest,
    RenderContext,
    api_token_volume,
    container_security,
    metadata,
    secret_env,
    service_account,
)
from aistack.operator.render.endpoints import model_name

AGENT_CONTAINER = "adapters"
CONFIG_VOLUME = "adapters"
HF_TOKEN_ENV = "HF_TOKEN"
REPORT_FILE = "/tmp/adapters/report.json"


def with_adapters(ctx: RenderContext, manifests: list[Manifest]) -> list[Manifest]:
    """The model layer's manifests (`render_model`) with LoRA's parts where the spec turns it on: the
    agent beside vLLM in the model's pods, the engine's runtime endpoints, the pods' account and
    volumes, and the list's ConfigMap, the report Lease and its Role."""
    vllm = ctx.stack.spec.model.vllm
    name = model_name(ctx)
    if name is None or vllm is None or not vllm.lora_enabled:
        return manifests
    out = []
    for manifest in manifests:
        if manifest["kind"] == "Deployment" and manifest["metadata"]["name"] == name:
            manifest = copy.deepcopy(manifest)
            pod = manifest["spec"]["template"]["spec"]
            engine = pod["containers"][0]
            engine["env"] = [*engine["env"], *engine_env()]
            cache = next(m["name"] for m in engine["volumeMounts"] if m["mountPath"] == CACHE_PATH)
            pod["containers"] = [*pod["containers"], agent_container(ctx, vllm, cache_volume=cache)]
            pod["volumes"] = [*pod["volumes"], *pod_volumes(ctx)]
            # S3 as the gateway's account (the pull Job's) or the stack's own; the token is projected
            # into the agent's container alone (automountServiceAccountToken stays false)
            pod.update(service_account(model_account(ctx)))
        out.append(manifest)
    return [*out, adapters_config_map(ctx), *adapters_report_rbac(ctx)]


def adapters_lease_name(ctx: RenderContext) -> str:
    return ctx.name(LEASE_COMPONENT)


def model_account(ctx: RenderContext) -> str:
    """The service account model pods with LoRA run as: the spec's gateway account (S3 access), or
    the stack's own `<stack>-model`."""
    return ctx.stack.spec.gateway.service_account_name or ctx.name("model")


def adapters_report_rbac(ctx: RenderContext) -> list[Manifest]:
    """The Lease the agents report on, and their right to write it (one verb on one object)."""
    lease, account = adapters_lease_name(ctx), model_account(ctx)
    out: list[Manifest] = [
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
         "metadata": metadata(ctx, name=lease, component=COMPONENT_MODEL), "spec": {}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": metadata(ctx, name=lease, component=COMPONENT_MODEL),
         "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [lease],
                    "verbs": ["patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": metadata(ctx, name=lease, component=COMPONENT_MODEL),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": lease},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ctx.stack.namespace}]},
    ]
    if ctx.stack.spec.gateway.service_account_name is None:  # the stack's own; a named one is the user's
        out.append({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": metadata(ctx, name=account, component=COMPONENT_MODEL),
                    "automountServiceAccountToken": False})
    return out


def adapters_config_map_name(ctx: RenderContext) -> str:
    return ctx.name("adapters")


def adapters_config_map(ctx: RenderContext) -> Manifest:
    """The adapter list the agents read (`aistack.api.adapters.AdapterList`, JSON)."""
    listing = adapter_list(ctx.stack.spec.model)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(ctx, name=adapters_config_map_name(ctx), component=COMPONENT_MODEL),
            "data": {ADAPTERS_FILE: listing.model_dump_json(by_alias=True, indent=1) + "\n"}}


def engine_env() -> list[dict[str, Any]]:
    """What the vLLM container adds with LoRA on: its runtime load/unload endpoints."""
    return [{"name": RUNTIME_LORA_ENV, "value": "1"}]


def agent_container(ctx: RenderContext, vllm: VllmSpec, *, cache_volume: str) -> dict[str, Any]:
    """The adapter agent, a sidecar of the model pod reaching its engine on loopback."""
    token = vllm.hf_token_secret_ref
    env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}, {"name": "HF_HOME", "value": "/tmp/hf"}]
    if token is not None:
        env.append(secret_env(HF_TOKEN_ENV, token))
    return {
        "name": AGENT_CONTAINER,
        "image": ctx.runtime_image,
        "command": ["python", "-m", "aistack.cli"],
        "args": [*ADAPTERS, "--config", f"{ADAPTERS_CONFIG_DIR}/{ADAPTERS_FILE}",
                 "--engine", f"http://127.0.0.1:{VLLM_PORT}/v1", "--root", CACHE_PATH,
                 "--report", REPORT_FILE, "--lease", adapters_lease_name(ctx),
                 *([TOKEN_ENV_FLAG, HF_TOKEN_ENV] if token is not None else [])],
        "env": env,
        "volumeMounts": [{"name": cache_volume, "mountPath": CACHE_PATH},
                         {"name": CONFIG_VOLUME, "mountPath": ADAPTERS_CONFIG_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"},
                         {"name": API_TOKEN_VOLUME, "mountPath": API_TOKEN_DIR, "readOnly": True}],
        # pulls stream file by file; loading is the engine's work
        "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}},
        "securityContext": container_security(),
    }


def pod_volumes(ctx: RenderContext) -> list[dict[str, Any]]:
    """The list's ConfigMap, and the agent's API token (the pod's service account's, projected)."""
    return [{"name": CONFIG_VOLUME, "configMap": {"name": adapters_config_map_name(ctx)}}, api_token_volume()]
