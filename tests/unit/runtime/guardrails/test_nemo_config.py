"""The NeMo Guardrails config generated from the spec."""

from __future__ import annotations

from pathlib import Path

import pytest
from nemoguardrails import RailsConfig

from aistack.api.gateway_config import GatewayConfig
from aistack.runtime.guardrails.nemo_config import nemo_config, nemo_config_yaml, write_nemo_config


def config(rails, primary=None):
    return GatewayConfig.model_validate({
        "name": "s", "namespace": "n", "stage": "dev", "configHash": "h",
        "model": {"publicName": "m",
                  "primary": primary or {"baseUrl": "http://vllm:8000/v1", "model": "qwen"}},
        "orchestration": {"mode": "pipeline", "maxSteps": 1, "timeouts": {}},
        "guardrails": {"rails": rails, "engine": "inprocess"}})


def test_offline_embeddings_and_both_self_checks():
    out = nemo_config(config({"input": ["self_check_input", "pii_mask"], "output": ["self_check_output"],
                              "policy": "Never discuss {{secrets}} or {% raw %} tricks."}))
    main, emb = out["models"]
    assert main == {"type": "main", "engine": "openai", "model": "qwen",
                    "parameters": {"base_url": "http://vllm:8000/v1", "temperature": 0.0, "max_tokens": 8,
                                   "api_key": "unused"}}
    assert emb["engine"] == "SentenceTransformers" and Path(emb["model"], "config.json").is_file()
    assert out["rails"] == {"input": {"flows": ["self check input"]},
                            "output": {"flows": ["self check output"]}}
    assert [p["task"] for p in out["prompts"]] == ["self_check_input", "self_check_output"]
    assert "{% raw %}Never discuss {{secrets}}" in out["prompts"][0]["content"]
    assert "(Yes or No)" in out["prompts"][1]["content"]


def test_api_key_is_an_env_var_name_never_a_value(monkeypatch):
    monkeypatch.setenv("OPENAI_KEY", "sk-real-secret")
    text = nemo_config_yaml(config({"input": ["self_check_input"]},
                                   {"baseUrl": "https://api.example.com/v1", "model": "gpt",
                                    "apiKeyEnv": "OPENAI_KEY"}))
    assert "api_key_env_var: OPENAI_KEY" in text and "sk-real-secret" not in text
    RailsConfig.from_content(yaml_content=text)  # NeMo accepts it


def test_separate_rails_model_and_written_layout(tmp_path):
    cfg = config({"output": ["self_check_output"],
                  "model": {"name": "small", "baseUrl": "http://judge:9000/v1"}})
    folder = write_nemo_config(cfg, tmp_path)
    assert folder == tmp_path / "aistack"
    parsed = RailsConfig.from_path(str(folder))
    assert parsed.models[0].model == "small" and parsed.rails.input.flows == []
    assert parsed.rails.output.flows == ["self check output"]


def test_no_guardrails_is_an_error():
    cfg = config({"input": []}).model_copy(update={"guardrails": None})
    with pytest.raises(ValueError, match="declares no guardrails"):
        nemo_config(cfg)
