"""Is the spec's model usable from here? Decides between the real model and the offline one."""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

from aistack.api.v1alpha1 import AIStack


@dataclass(frozen=True)
class ModelChoice:
    base_url: str | None
    """The endpoint to use, or None for the offline model."""
    reason: str
    """Why (shown in the status panel)."""


def choose_model(stack: AIStack, *, model_url: str | None = None, timeout_seconds: float = 3.0,
                 env: dict[str, str] | None = None) -> ModelChoice:
    """The spec's endpoint (or `model_url` for a self-hosted model) when it answers `/models`."""
    environ = os.environ if env is None else env
    model = stack.spec.model
    headers: dict[str, str] = {}
    if model_url:
        base = model_url.rstrip("/")
    elif model.provider == "openai" and model.openai is not None:
        base = str(model.openai.base_url).rstrip("/")
        ref = model.openai.api_key_secret_ref
        if ref is not None:
            key = environ.get(ref.env_name())
            if not key:
                return ModelChoice(None, f"${ref.env_name()} is not set (the key for {base})")
            headers["Authorization"] = f"Bearer {key}"
    else:
        return ModelChoice(None, "a vLLM model runs in the cluster; pass --model-url for a local vLLM/Ollama")
    try:
        response = httpx.get(f"{base}/models", headers=headers, timeout=timeout_seconds)
    except httpx.HTTPError as exc:
        return ModelChoice(None, f"{base} is unreachable ({type(exc).__name__})")
    if response.status_code in (401, 403):
        return ModelChoice(None, f"{base} refused the API key ({response.status_code})")
    if response.status_code >= 500:
        return ModelChoice(None, f"{base} answered {response.status_code}")
    return ModelChoice(base, f"{base} is reachable")
