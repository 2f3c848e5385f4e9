from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from aistack.api.manifests import parse_stack
from aistack.api.v1alpha1 import AIStack
from aistack.runtime.local.model_probe import choose_model
from aistack.testing.openai_server import run_openai_server

KEY_ENV = "AISTACK_SECRET_OPENAI_API_KEY"


def stack(base_url: str, provider: str = "openai") -> AIStack:
    model = ({"provider": "openai", "name": "gpt-4o-mini",
              "openai": {"baseUrl": base_url, "apiKeySecretRef": {"name": "openai", "key": "api-key"}}}
             if provider == "openai" else
             {"provider": "vllm", "name": "Qwen/Qwen2.5-0.5B-Instruct", "vllm": {"gpu": {"count": 1}}})
    return parse_stack(yaml.safe_load(yaml.safe_dump({
        "apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s"},
        "spec": {"model": model}})))


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with run_openai_server(models=["gpt-4o-mini"], api_key="right") as server:
        yield f"http://{server.host}:{server.port}/v1"


def test_a_reachable_endpoint_with_a_good_key_is_used(upstream: str) -> None:
    choice = choose_model(stack(upstream), env={KEY_ENV: "right"})
    assert choice.base_url == upstream


@pytest.mark.parametrize(("env", "reason"), [
    ({}, "$AISTACK_SECRET_OPENAI_API_KEY is not set"),
    ({KEY_ENV: "wrong"}, "refused the API key from $AISTACK_SECRET_OPENAI_API_KEY (401)"),
])
def test_missing_or_refused_keys_fall_back_to_offline(upstream: str, env: dict, reason: str) -> None:
    choice = choose_model(stack(upstream), env=env)
    assert choice.base_url is None and reason in choice.reason


PROVIDER_ENV = "LOOPBACK_PROVIDER_API_KEY"
PROVIDERS = {"127.0.0.1": PROVIDER_ENV}  # the loopback test server stands in for a provider's public host


def test_the_providers_own_variable_supplies_the_key_when_the_secrets_is_unset(upstream: str) -> None:
    choice = choose_model(stack(upstream), env={PROVIDER_ENV: "right"}, provider_envs=PROVIDERS)
    assert choice.base_url == upstream
    assert choice.reason == f"{upstream} is reachable (key from ${PROVIDER_ENV})"
    assert "right" not in choice.reason


def test_the_secrets_variable_wins_over_the_providers(upstream: str) -> None:
    choice = choose_model(stack(upstream), env={KEY_ENV: "right", PROVIDER_ENV: "wrong"},
                          provider_envs=PROVIDERS)
    assert choice.base_url == upstream and f"key from ${KEY_ENV}" in choice.reason


@pytest.mark.parametrize(("env", "reason"), [
    ({}, f"neither ${KEY_ENV} nor ${PROVIDER_ENV} is set (the key for http://127.0.0.1:"),
    ({PROVIDER_ENV: "wrong"}, f"refused the API key from ${PROVIDER_ENV} (401)"),
])
def test_without_a_usable_key_the_reason_names_both_variables_or_the_one_used(upstream: str, env: dict,
                                                                               reason: str) -> None:
    choice = choose_model(stack(upstream), env=env, provider_envs=PROVIDERS)
    assert choice.base_url is None and reason in choice.reason


def test_a_host_with_no_known_provider_names_only_the_secret(upstream: str) -> None:
    choice = choose_model(stack(upstream), env={"OPENAI_API_KEY": "right"})
    assert choice.base_url is None and choice.reason.startswith(f"${KEY_ENV} is not set")


def test_unreachable_endpoints_and_cluster_models_fall_back_to_offline() -> None:
    down = choose_model(stack("http://127.0.0.1:9/v1"), env={KEY_ENV: "k"}, timeout_seconds=1)
    assert down.base_url is None and "unreachable" in down.reason
    vllm = choose_model(stack("", provider="vllm"), env={})
    assert vllm.base_url is None and "--model-url" in vllm.reason


def test_model_url_serves_a_vllm_spec_locally() -> None:
    with run_openai_server(models=["Qwen/Qwen2.5-0.5B-Instruct"]) as server:
        url = f"http://{server.host}:{server.port}/v1"
        assert choose_model(stack("", provider="vllm"), model_url=url + "/", env={}).base_url == url
