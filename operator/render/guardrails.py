"""Layer 5: the guardrails sidecar of the gateway pod.

Only the self-check rails need an LLM and so NeMo Guardrails; the fast rails run inside the
gateway. A stack whose rails are all fast gets no sidecar. The sidecar runs the runtime
image's `python -m aistack.runtime.guardrails.sidecar`, which generates the NeMo config from
the gateway's own ConfigMap (one generator for pods and `aistack up`, with NeMo's embeddings
pinned to the model shipped in the image, so it never reaches for a model hub) — or serves the
user's complete NeMo config from `guardrails.configMapRef`.
"""

from __future__ import annotations

from typing import Any

from aistack.api import resources as default_resources
from aistack.api.conventions import GATEWAY_CONFIG_ENV, GATEWAY_CONFIG_PATH, GUARDRAILS_PORT
from aistack.api.v1alpha1 import GuardrailsSpec
from aistack.operator.render.common import (
    Manifest,
    RenderContext,
    container_security,
    resources,
    secret_env,
)

CONFIG_ID = "aistack"
USER_CONFIG_ROOT = "/etc/aistack/nemo"
VOLUME = "guardrails-config"
# NeMo listens on the pod's loopback only (never on the Service), so the kubelet cannot reach
# it over HTTP: the probe runs inside the container.
PROBE = ["python", "-c", ("import urllib.request as u; "
                          f"u.urlopen('http://127.0.0.1:{GUARDRAILS_PORT}/v1/rails/configs', timeout=4)")]


def needs_sidecar(ctx: RenderContext) -> bool:
    guardrails = ctx.stack.spec.guardrails
    return guardrails is not None and guardrails.uses_llm


def render_guardrails(ctx: RenderContext) -> list[Manifest]:
    """No objects of its own: the sidecar reads the gateway ConfigMap (or the user's)."""
    return []


def sidecar(ctx: RenderContext, *,
            gateway_volume: str, gateway_mount: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sidecar container of the gateway pod and the volumes it adds."""
    guardrails = ctx.stack.spec.guardrails
    assert guardrails is not None
    args = ["--port", str(GUARDRAILS_PORT)]
    mounts = [{"name": gateway_volume, "mountPath": gateway_mount, "readOnly": True},
              {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = []
    if guardrails.config_map_ref is not None:
        args += ["--nemo-config", USER_CONFIG_ROOT, "--config-id", CONFIG_ID]
        mounts.append({"name": VOLUME, "mountPath": f"{USER_CONFIG_ROOT}/{CONFIG_ID}", "readOnly": True})
        volumes.append({"name": VOLUME, "configMap": {"name": guardrails.config_map_ref.name}})
    container = {
        "name": "guardrails",
        "image": guardrails.image or ctx.runtime_image,
        "command": ["python", "-m", "aistack.runtime.guardrails.sidecar"],
        "args": args,
        "env": [
            {"name": GATEWAY_CONFIG_ENV, "value": GATEWAY_CONFIG_PATH},
            {"name": "HOME", "value": "/tmp"},
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            *_key_env(ctx, guardrails),
        ],
        "resources": resources(guardrails.resources, default_resources.GUARDRAILS_SIDECAR),
        "startupProbe": {"exec": {"command": PROBE}, "periodSeconds": 5, "timeoutSeconds": 5,
                         "failureThreshold": 60},
        "livenessProbe": {"exec": {"command": PROBE}, "periodSeconds": 30, "timeoutSeconds": 5,
                          "failureThreshold": 4},
        "volumeMounts": mounts,
        "securityContext": container_security(),
    }
    return container, volumes


def _key_env(ctx: RenderContext, guardrails: GuardrailsSpec) -> list[dict[str, Any]]:
    """The model key, under the env name the gateway config gives it (NeMo reads that name)."""
    model = ctx.stack.spec.model
    uses_stack_endpoint = guardrails.model is None or guardrails.model.base_url is None
    if uses_stack_endpoint and model.openai is not None and model.openai.api_key_secret_ref is not None:
        ref = model.openai.api_key_secret_ref
        return [secret_env(ref.env_name(), ref)]
    return []
