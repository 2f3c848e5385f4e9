"""Layer 5: the NeMo Guardrails config (a ConfigMap) and the sidecar that serves it.

Only the self-check rails need an LLM and so NeMo Guardrails; the fast rails run inside the
gateway. A stack whose rails are all fast gets no sidecar and no ConfigMap.
"""

from __future__ import annotations

from typing import Any

from aistack.api.conventions import COMPONENT_GATEWAY, GUARDRAILS_PORT
from aistack.api.v1alpha1 import GuardrailsSpec
from aistack.operator.render import model as model_render
from aistack.operator.render.common import (
    Manifest,
    RenderContext,
    config_file,
    container_security,
    http_probe,
    metadata,
    resources,
    secret_env,
)

CONFIG_ID = "aistack"
CONFIG_ROOT = "/etc/guardrails"
VOLUME = "guardrails-config"
# vLLM in the cluster takes no key, but the OpenAI client NeMo uses refuses to start without one.
NO_KEY_PLACEHOLDER = "EMPTY"

SELF_CHECK_INPUT = """Your task is to check whether the user message below complies with the policy.

Policy: {policy}

User message: "{{{{ user_input }}}}"

Question: Should the user message be blocked (Yes or No)?
Answer:"""

SELF_CHECK_OUTPUT = """Your task is to check whether the bot message below complies with the policy.

Policy: {policy}

Bot message: "{{{{ bot_response }}}}"

Question: Should the message be blocked (Yes or No)?
Answer:"""


def needs_sidecar(ctx: RenderContext) -> bool:
    guardrails = ctx.stack.spec.guardrails
    return guardrails is not None and guardrails.uses_llm


def config_map_name(ctx: RenderContext) -> str:
    """The ConfigMap mounted into the sidecar: the user's, or the one rendered here."""
    guardrails = ctx.stack.spec.guardrails
    assert guardrails is not None
    if guardrails.config_map_ref is not None:
        return guardrails.config_map_ref.name
    return ctx.name("guardrails-config")


def nemo_config(ctx: RenderContext, guardrails: GuardrailsSpec) -> dict[str, str]:
    """The files of the NeMo Guardrails config folder, generated from the spec."""
    model_name, base_url = _rails_model(ctx, guardrails)
    rails: dict[str, Any] = {}
    if "self_check_input" in guardrails.input:
        rails["input"] = {"flows": ["self check input"]}
    if "self_check_output" in guardrails.output:
        rails["output"] = {"flows": ["self check output"]}
    prompts = []
    if "input" in rails:
        prompts.append({"task": "self_check_input", "content": SELF_CHECK_INPUT.format(policy=guardrails.policy)})
    if "output" in rails:
        prompts.append({"task": "self_check_output", "content": SELF_CHECK_OUTPUT.format(policy=guardrails.policy)})
    config = {
        "models": [{"type": "main", "engine": "openai", "model": model_name,
                    "parameters": {"base_url": base_url, "temperature": 0}}],
        "rails": rails,
        "prompts": prompts,
    }
    return {"config.yml": config_file(config)}


def render_guardrails(ctx: RenderContext) -> list[Manifest]:
    guardrails = ctx.stack.spec.guardrails
    if guardrails is None or not needs_sidecar(ctx) or guardrails.config_map_ref is not None:
        return []
    return [{
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": metadata(ctx, name=config_map_name(ctx), component=COMPONENT_GATEWAY),
        "data": nemo_config(ctx, guardrails),
    }]


def sidecar(ctx: RenderContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sidecar container of the gateway pod and the volume it mounts."""
    guardrails = ctx.stack.spec.guardrails
    assert guardrails is not None
    container = {
        "name": "guardrails",
        "image": guardrails.image or ctx.runtime_image,
        "command": ["nemoguardrails"],
        "args": ["server", "--config", CONFIG_ROOT, "--default-config-id", CONFIG_ID,
                 "--port", str(GUARDRAILS_PORT), "--disable-chat-ui"],
        "env": [_key_env(ctx, guardrails), {"name": "HOME", "value": "/tmp"}],
        "ports": [{"name": "guardrails", "containerPort": GUARDRAILS_PORT, "protocol": "TCP"}],
        "resources": resources(guardrails.resources),
        "readinessProbe": {"tcpSocket": {"port": "guardrails"}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": http_probe("/v1/rails/configs", "guardrails", period=15, failures=4, timeout=5),
        "volumeMounts": [
            {"name": VOLUME, "mountPath": f"{CONFIG_ROOT}/{CONFIG_ID}", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": container_security(),
    }
    volume = {"name": VOLUME, "configMap": {"name": config_map_name(ctx)}}
    return container, volume


def _rails_model(ctx: RenderContext, guardrails: GuardrailsSpec) -> tuple[str, str]:
    model = ctx.stack.spec.model
    name = guardrails.model.name if guardrails.model else model.public_name
    if guardrails.model and guardrails.model.base_url:
        return name, guardrails.model.base_url.rstrip("/")
    if model.provider == "openai":
        assert model.openai is not None
        return (guardrails.model.name if guardrails.model else (model.openai.model or model.name),
                str(model.openai.base_url).rstrip("/"))
    return name, model_render.base_url(ctx)


def _key_env(ctx: RenderContext, guardrails: GuardrailsSpec) -> dict[str, Any]:
    model = ctx.stack.spec.model
    uses_stack_endpoint = guardrails.model is None or guardrails.model.base_url is None
    if uses_stack_endpoint and model.openai is not None and model.openai.api_key_secret_ref is not None:
        return secret_env("OPENAI_API_KEY", model.openai.api_key_secret_ref)
    return {"name": "OPENAI_API_KEY", "value": NO_KEY_PLACEHOLDER}
