"""The model's LoRA adapters in the cluster: the adapter list's ConfigMap and the adapter agent
beside each engine (`aistack.runtime.engine.adapter_agent`).

The list lives in a ConfigMap mounted as a folder (never with subPath, which the kubelet does not
refresh): a changed list reaches the running pods in a kubelet sync (about a minute) and the agent
loads or unloads without a restart. Nothing of the list is in the pod template, so adding or
removing an adapter rolls no pod. The agent pulls remote adapters into the model cache volume with
the base weights' pull: a Hugging Face token from `hfTokenSecretRef`; S3 through the pod's service
account (the gateway's, as the pull Job reads an S3 mirror), which model pods with LoRA run as.
"""

from __future__ import annotations

from typing import Any

from aistack.api.adapters import ADAPTERS, ADAPTERS_CONFIG_DIR, ADAPTERS_FILE, adapter_list
from aistack.api.conventions import COMPONENT_MODEL, VLLM_PORT
from aistack.api.engine import RUNTIME_LORA_ENV
from aistack.api.model_cache import CACHE_PATH, TOKEN_ENV_FLAG
from aistack.api.v1alpha1 import VllmSpec
from aistack.operator.render.common import Manifest, RenderContext, container_security, metadata, secret_env

AGENT_CONTAINER = "adapters"
CONFIG_VOLUME = "adapters"
HF_TOKEN_ENV = "HF_TOKEN"
REPORT_FILE = "/tmp/adapters/report.json"


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
                 "--report", REPORT_FILE,
                 *([TOKEN_ENV_FLAG, HF_TOKEN_ENV] if token is not None else [])],
        "env": env,
        "volumeMounts": [{"name": cache_volume, "mountPath": CACHE_PATH},
                         {"name": CONFIG_VOLUME, "mountPath": ADAPTERS_CONFIG_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
        # pulls stream file by file; loading is the engine's work
        "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}},
        "securityContext": container_security(),
    }


def config_volume(ctx: RenderContext) -> dict[str, Any]:
    return {"name": CONFIG_VOLUME, "configMap": {"name": adapters_config_map_name(ctx)}}
