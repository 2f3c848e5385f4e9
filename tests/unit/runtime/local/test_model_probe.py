from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from aistack.api.manifests import parse_stack
from aistack.runtime.local.model_probe import choose_model
from aistack.runtime.testing.openai_server import run_openai_server

KEY_ENV = "AISTACK_SECRET_OPENAI_API_KEY"


def stack(base_url: str, provider: str = "openai"):  # type: ignore[no-untyped-def]
    model = ({"provider": "openai", "name": "gpt-4o-mini",
              "openai": {"baseUrl": base_url, "apiKeySecretRef": {"name": "openai", "key": "api-key"}}}
             if provider == "openai" else
             {"provider": "vllm", "name": "Qwen/Qwen2.5-0.5B-Instruct", "vllm": {"gpu": {"count": 1}}})
    return parse_stack(yaml.safe_load(yaml.safe_dump({
        "apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s"}, "spec": {"model": model}})))


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with run_openai_server(models=["gpt-4o-mini"], api_key="right") as server:
        yield f"http://{server.host}:{server.port}/v1"


def test_a_reachable_endpoint_with_a_good_key_is_used(upstream: str) -> None:
    choice = choose_model(stack(upstream), env={KEY_ENV: "right"})
    assert choice.base_url == upstream


@pytest.mark.parametrize(("env", "reason"), [
    ({}, "$AISTACK_SECRET_OPENAI_API_KEY is not set"),
    ({KEY_ENV: "wrong"}, "refused the API key (401)"),
])
def test_missing_or_refused_keys_fall_back_to_offline(upstream: str, env: dict, reason: str) -> None:
    choice = choose_model(stack(upstream), env=env)
    assert choice.base_url is None and reason in choice.reason


def test_unreachable_endpoints_and_cluster_models_fall_back_to_offline() -> None:
    down = choose_model(stack("http://127.0.0.1:9/v1"), env={KEY_ENV: "k"}, timeout_seconds=1)
    assert down.base_url is None and "unreachable" in down.reason
    vllm = choose_model(stack("", provider="vllm"), env={})
    assert vllm.base_url is None and "--model-url" in vllm.reason


def test_model_url_serves_a_vllm_spec_locally() -> None:
    with run_openai_server(models=["Qwen/Qwen2.5-0.5B-Instruct"]) as server:
        url = f"http://{server.host}:{server.port}/v1"
        assert choose_model(stack("", provider="vllm"), model_url=url + "/", env={}).base_url == url
