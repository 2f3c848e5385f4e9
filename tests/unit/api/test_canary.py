"""`spec.model.canary`: what both pydantic and the CRD's CEL rules accept, and the canary's model."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from aistack.api.errors import field_errors
from aistack.api.v1alpha1 import AIStack
from aistack.api.v1alpha1.canary import canary_model
from aistack.testing.crd_rules import failed_cel_messages, schema, walk


def stack(model: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s"},
            "spec": {"model": {"provider": "vllm", "name": "Qwen/Qwen2.5-7B-Instruct", **model}, **spec}}


def pydantic_errors(doc: dict[str, Any]) -> list[str]:
    try:
        AIStack.model_validate(copy.deepcopy(doc))
    except ValidationError as err:
        return [str(e) for e in field_errors(err)]
    return []


OPENAI = {"provider": "openai", "name": "gpt-4o-mini",
          "openai": {"baseUrl": "https://api.openai.com/v1", "apiKeySecretRef": {"name": "o", "key": "k"}}}
KEYS = {"gateway": {"apiKeysSecretRef": {"name": "keys", "key": "keys"}}}


@pytest.mark.parametrize(("model", "spec"), [
    ({"canary": {"name": "Qwen/Qwen2.5-7B-Instruct-1M", "weight": 10}}, {}),
    ({"canary": {"image": "vllm/vllm-openai:v0.33.0", "weight": 0}}, {}),
    ({"canary": {"extraArgs": ["--revision", "abc123"], "weight": 100, "replicas": 2}}, {}),
    ({"vllm": {"adapters": [{"name": "support", "source": "hf://acme/support"}]},
      "canary": {"adapter": "support", "weight": 5, "stickyBy": "header",
                 "stickyHeader": "X-Session-Id"}}, {}),
    ({"canary": {"name": "org/v2", "weight": 10, "stickyBy": "apiKey",
                 "analysis": {"steps": [25, 50, 100], "stepIntervalSeconds": 300}}}, KEYS),
    ({**OPENAI, "canary": {"name": "gpt-4.1-mini", "weight": 10}}, {}),
])
def test_a_consistent_canary_is_accepted_by_both(model: dict[str, Any], spec: dict[str, Any]) -> None:
    doc = stack(model, **spec)
    assert pydantic_errors(doc) == []
    assert failed_cel_messages(doc) == []


@pytest.mark.parametrize(("canary", "field"), [
    ({"name": "org/v2", "weight": 10, "analysis": {"steps": [5, 50]}}, "spec.model.canary.analysis.steps[0]"),
    ({"name": "org/v2", "weight": 10, "stickyHeader": "X-S"}, "spec.model.canary.stickyHeader"),
    ({"adapter": "support", "name": "org/v2", "weight": 10}, "spec.model.canary.name"),
    ({"weight": 10}, "spec.model.canary.name"),
    ({"name": "org/v2", "weight": -1}, "spec.model.canary.weight"),
    ({"name": "org/v2", "weight": 10, "analysis": {"maxEvaluationRegression": 1.5}},
     "spec.model.canary.analysis.maxEvaluationRegression"),
])
def test_contradictory_canaries_name_the_field_in_both(canary: dict[str, Any], field: str) -> None:
    adapters = [{"name": "support", "source": "hf://acme/support"}]
    doc = stack({"vllm": {"adapters": adapters}, "canary": canary})
    errors = pydantic_errors(doc)
    assert any(e.startswith(field + ":") for e in errors), errors
    if field in ("spec.model.canary.weight", "spec.model.canary.analysis.maxEvaluationRegression"):
        # a bound: the OpenAPI schema refuses it, not a rule
        bounds = dict(walk(schema()))["." + field]
        assert (bounds["minimum"], bounds["maximum"]) == ((0, 100) if field.endswith("weight") else (0, 1))
    else:
        assert failed_cel_messages(doc), doc


def test_a_canary_of_another_model_cannot_come_from_the_stables_mirror() -> None:
    doc = stack({"vllm": {"cache": {"prePull": True, "source": "s3://weights/qwen"}},
                 "canary": {"name": "org/v2", "weight": 10}})
    assert any("spec.model.canary.name" in e and "s3://weights/qwen" in e for e in pydantic_errors(doc))


def test_the_canary_model_is_the_stable_with_the_canarys_differences() -> None:
    doc = stack({"vllm": {"extraArgs": ["--enable-prefix-caching"],
                          "autoscaling": {"maxReplicas": 4},
                          "adapters": [{"name": "support", "source": "hf://acme/support"}]},
                 "canary": {"name": "org/v2", "weight": 10, "replicas": 2}})
    model = AIStack.model_validate(doc).spec.model
    canary = canary_model(model)
    assert (canary.name, canary.public_name) == ("org/v2", "Qwen/Qwen2.5-7B-Instruct")
    assert canary.vllm is not None and canary.vllm.replicas == 2 and canary.vllm.autoscaling is None
    assert canary.vllm.extra_args == ["--enable-prefix-caching"] and canary.vllm.adapters == []
    assert canary.canary is None
