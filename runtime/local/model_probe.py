"""Is the spec's model usable from here? Decides between the real model and the offline one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from aistack.api.v1alpha1 import AIStack
from aistack.runtime.local.provider_keys import PROVIDER_KEY_ENVS, key_source


@dataclass(frozen=True)
class ModelChoice:
    base_url: str | None
    """The endpoint to use, or None for the offline model."""
    reason: str
    """Why (shown in the status panel)."""


def choose_model(stack: AIStack, *, model_url: str | None = None, timeout_seconds: float = 3.0,
                 env: Mapping[str, str] | None = None,
                 provider_envs: Mapping[str, str] = PROVIDER_KEY_ENVS) -> ModelChoice:
    """The spec's endpoint (or `model_url` for a self-hosted model) when it answers `/models`.

    The key is the secret's variable, else the provider's conventional one (`provider_keys`);
    the reason says which variable supplied it, never its value.
    """
    environ = os.environ if env is None else env
    model = stack.spec.model
    headers: dict[str, str] = {}
    key_env: str | None = None
    if model_url:
        base = model_url.rstrip("/")
    elif model.provider == "openai" and model.openai is not None:
        base = str(model.openai.base_url).rstrip("/")
        ref = model.openai.api_key_secret_ref
        if ref is not None:
            source = key_source(secret_env=ref.env_name(), base_url=base, environ=environ,
                                provider_envs=provider_envs)
            if source.env is None:
                return ModelChoice(None, f"{source.unset()} (the key for {base})")
            headers["Authorization"] = f"Bearer {environ[source.env]}"
            key_env = source.env
    else:
        return ModelChoice(None, "a vLLM model runs in the cluster; pass --model-url for a local vLLM/Ollama")
    try:
        response = httpx.get(f"{base}/models", headers=headers, timeout=timeout_seconds)
    except httpx.HTTPError as exc:
        return ModelChoice(None, f"{base} is unreachable ({type(exc).__name__})")
    if response.status_code in (401, 403):
        refused = f"the API key from ${key_env}" if key_env else "a request without an API key"
        return ModelChoice(None, f"{base} refused {refused} ({response.status_code})")
    if response.status_code >= 500:
        return ModelChoice(None, f"{base} answered {response.status_code}")
    return ModelChoice(base, f"{base} is reachable" + (f" (key from ${key_env})" if key_env else ""))
