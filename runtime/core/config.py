"""The gateway config file: where a process finds it and how it is read.

In a pod the file is a ConfigMap mount, locally any YAML file; its path comes from
`AISTACK_GATEWAY_CONFIG`. The gateway and its guardrails sidecar read the same file, so both
read it here; reloading it on change is the gateway's (`aistack.runtime.gateway.reload`).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from aistack.api.conventions import GATEWAY_CONFIG_ENV, GATEWAY_CONFIG_PATH
from aistack.api.gateway_config import GatewayConfig


class ConfigError(Exception):
    """The config file is missing, not YAML, or not a valid gateway config."""


def config_path_from_env() -> Path:
    return Path(os.environ.get(GATEWAY_CONFIG_ENV) or GATEWAY_CONFIG_PATH)


def parse_config(text: str | bytes, *, source: str) -> GatewayConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping (the gateway config), not {type(data).__name__}")
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as err:
        lines = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors()]
        raise ConfigError(f"{source} is not a valid gateway config:\n  " + "\n  ".join(lines)) from None


def load_config(path: Path) -> GatewayConfig:
    try:
        text = path.read_bytes()
    except OSError as err:
        raise ConfigError(
            f"cannot read the gateway config {path}: {err.strerror}; set {GATEWAY_CONFIG_ENV}") from None
    return parse_config(text, source=str(path))
