"""The guardrails layer (render/guardrails.py): the NeMo sidecar and the user's rails config."""

from __future__ import annotations

import yaml

from aistack.operator.render import render


def test_guardrails_sidecar_only_for_llm_rails(make_stack, by_kind_name) -> None:
    fast = make_stack("rag", {"spec": {"guardrails": {"input": ["max_length"], "output": ["pii_mask"]}}})
    manifests = by_kind_name(render(fast).manifests)
    gateway = manifests[("Deployment", "docs-assistant-gateway")]["spec"]["template"]["spec"]
    assert [c["name"] for c in gateway["containers"]] == ["gateway"]

    manifests = by_kind_name(render(make_stack("rag")).manifests)
    gateway = manifests[("Deployment", "docs-assistant-gateway")]["spec"]["template"]["spec"]
    sidecar = gateway["containers"][1]
    assert sidecar["name"] == "guardrails"
    assert sidecar["command"] == ["python", "-m", "aistack.runtime.guardrails.sidecar"]
    assert sidecar["args"] == ["--port", "8001"]
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["AISTACK_SECRET_OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "openai",
                                                                                 "key": "api-key"}
    assert env["AISTACK_GATEWAY_CONFIG"]["value"] == "/etc/aistack/gateway/config.yaml"
    assert env["HF_HUB_OFFLINE"]["value"] == "1"
    assert {"name": "config",
            "mountPath": "/etc/aistack/gateway", "readOnly": True} in sidecar["volumeMounts"]
    assert "exec" in sidecar["livenessProbe"] and "ports" not in sidecar  # loopback only, off the Service


def test_sidecar_builds_an_offline_nemo_config_from_the_rendered_gateway_config(make_stack,
                                                                               by_kind_name) -> None:
    """What the sidecar will serve, computed from exactly what the operator renders."""
    from aistack.api.gateway_config import GatewayConfig
    from aistack.runtime.guardrails.nemo_config import nemo_config

    manifests = by_kind_name(render(make_stack("rag")).manifests)
    data = manifests[("ConfigMap", "docs-assistant-gateway-config")]["data"]
    config = GatewayConfig.model_validate(yaml.safe_load(next(iter(data.values()))))
    nemo = nemo_config(config)
    assert nemo["rails"] == {"input": {"flows": ["self check input"]},
                             "output": {"flows": ["self check output"]}}
    main, embeddings = nemo["models"]
    assert main["parameters"]["base_url"] == "https://api.openai.com/v1"
    assert main["api_key_env_var"] == "AISTACK_SECRET_OPENAI_API_KEY"
    assert embeddings["engine"] == "SentenceTransformers"  # never a hub download in the pod
    assert {p["task"] for p in nemo["prompts"]} == {"self_check_input", "self_check_output"}


def test_guardrails_user_config_map_is_mounted_not_generated(make_stack, by_kind_name) -> None:
    stack = make_stack("rag", {"spec": {"guardrails": {"configMapRef": {"name": "my-rails"}}}})
    manifests = by_kind_name(render(stack).manifests)
    spec = manifests[("Deployment", "docs-assistant-gateway")]["spec"]["template"]["spec"]
    assert {"name": "guardrails-config", "configMap": {"name": "my-rails"}} in spec["volumes"]
    sidecar = spec["containers"][1]
    assert sidecar["args"][-4:] == ["--nemo-config", "/etc/aistack/nemo", "--config-id", "aistack"]
    assert {"name": "guardrails-config", "mountPath": "/etc/aistack/nemo/aistack", "readOnly": True} in \
        sidecar["volumeMounts"]
