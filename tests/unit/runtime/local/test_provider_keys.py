"""The provider's conventional key variable stands in for an unset secret variable, locally only."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aistack.api.gateway_config import Endpoints, build_gateway_config
from aistack.api.manifests import parse_stack
from aistack.api.v1alpha1 import AIStack
from aistack.runtime.local.provider_keys import PROVIDER_KEY_ENVS, key_source, with_provider_keys
from aistack.runtime.local.state import local_gateway_config

SECRET = "AISTACK_SECRET_OPENAI_API_KEY"


@pytest.mark.parametrize(("base_url", "env"), [
    ("https://api.openai.com/v1", "OPENAI_API_KEY"),
    ("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    ("https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    ("https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    ("https://api.together.ai/v1", "TOGETHER_API_KEY"),
    ("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    ("https://api.deepseek.com", "DEEPSEEK_API_KEY"),
    ("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    ("https://API.OpenAI.com:443/v1", "OPENAI_API_KEY"),
])
def test_each_provider_host_maps_to_its_documented_variable(base_url: str, env: str) -> None:
    source = key_source(secret_env=SECRET, base_url=base_url, environ={env: "k"})
    assert source.env == env and source.tried == (SECRET, env) and source.fallback


def test_the_secret_wins_and_unknown_hosts_have_no_fallback() -> None:
    both = key_source(secret_env=SECRET, base_url="https://api.openai.com/v1",
                      environ={SECRET: "a", "OPENAI_API_KEY": "b"})
    assert both.env == SECRET and not both.fallback
    unknown = key_source(secret_env=SECRET, base_url="https://llm.example.com/v1",
                         environ={"OPENAI_API_KEY": "b"})
    assert unknown.env is None and unknown.tried == (SECRET,) and unknown.unset() == f"${SECRET} is not set"
    empty = key_source(secret_env=SECRET, base_url="https://api.openai.com/v1",
                       environ={SECRET: "", "OPENAI_API_KEY": ""})
    assert empty.env is None and empty.unset() == f"neither ${SECRET} nor $OPENAI_API_KEY is set"
    assert set(PROVIDER_KEY_ENVS.values()) >= {"OPENAI_API_KEY", "GROQ_API_KEY", "MISTRAL_API_KEY"}


def stack(tmp_path: Path) -> AIStack:
    ref = {"name": "openai", "key": "api-key"}
    return parse_stack(yaml.safe_load(yaml.safe_dump({
        "apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s"},
        "spec": {"model": {
            "provider": "openai", "name": "gpt-4o-mini",
            "openai": {"baseUrl": "https://api.openai.com/v1", "apiKeySecretRef": ref},
            "fallback": {"baseUrl": "https://api.groq.com/openai/v1", "model": "llama-3.1-8b-instant",
                         "apiKeySecretRef": {"name": "groq", "key": "api-key"}}}}})))


def test_the_local_config_reads_the_providers_variable_for_each_upstream(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET, raising=False)
    monkeypatch.delenv("AISTACK_SECRET_GROQ_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    monkeypatch.setenv("GROQ_API_KEY", "gsk-local")
    config = local_gateway_config(stack(tmp_path), state=tmp_path)
    assert config.model.primary.api_key_env == "OPENAI_API_KEY"
    assert config.model.fallback is not None and config.model.fallback.api_key_env == "GROQ_API_KEY"
    assert "sk-local" not in config.model_dump_json()


def test_a_set_secret_or_the_cluster_config_keeps_the_secrets_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    monkeypatch.setenv(SECRET, "sk-secret")
    assert local_gateway_config(stack(tmp_path), state=tmp_path).model.primary.api_key_env == SECRET
    monkeypatch.delenv(SECRET)
    cluster = build_gateway_config(stack(tmp_path), Endpoints())  # what the operator renders: Secrets only
    assert cluster.model.primary.api_key_env == SECRET
    unchanged = with_provider_keys(cluster, environ={}, provider_envs=PROVIDER_KEY_ENVS)
    assert unchanged == cluster


def test_an_api_canary_reads_the_same_providers_variable(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    doc = stack(tmp_path).model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["spec"]["model"]["canary"] = {"name": "gpt-4.1-mini", "weight": 10}
    config = local_gateway_config(parse_stack(doc), state=tmp_path)
    assert config.model.canary is not None
    assert (config.model.canary.upstream.model, config.model.canary.upstream.api_key_env) == \
        ("gpt-4.1-mini", "OPENAI_API_KEY")
