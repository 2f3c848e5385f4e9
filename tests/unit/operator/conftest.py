"""Shared builders for the operator's unit tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from aistack.api.manifests import parse_stack
from aistack.api.v1alpha1 import AIStack

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def make_stack():
    """Build an AIStack from an example with edits: `make_stack("production", {"spec": {...}})`."""

    def build(name: str, patch: dict[str, Any] | None = None, *, uid: str | None = None) -> AIStack:
        data = copy.deepcopy(example(name))
        _merge(data, patch or {})
        if uid:
            data["metadata"]["uid"] = uid
        return parse_stack(data)

    return build


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
