"""Combining stages: the source's behaviour, the target's own fields, the source's config hash."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from aistack.api.config_hash import config_hash
from aistack.api.v1alpha1 import AIStackSpec
from aistack.cli.promotion.fields import PROMOTABLE_PATHS, combine, put
from aistack.cli.promotion.kustomize import merge_patch


def spec_of(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())["spec"]


def hash_of(spec: dict[str, Any]) -> str:
    return config_hash(AIStackSpec.model_validate(spec))


PROBES: dict[tuple[str, ...], Any] = {
    # switching provider is covered by test_switching_provider_swaps_the_model_block
    ("model", "provider"): None,
    ("model", "name"): "other/model", ("model", "servedName"): "other",
    ("model", "defaults"): {"temperature": 0.9},
    ("model", "vllm", "image"): "vllm/vllm-openai:v9", ("model", "vllm", "gpu", "count"): 2,
    ("model", "vllm", "tensorParallelSize"): 2, ("model", "vllm", "maxModelLen"): 4096,
    ("model", "vllm", "gpuMemoryUtilization"): 0.5, ("model", "vllm", "extraArgs"): ["--enforce-eager"],
    ("model", "vllm", "adapters"): [{"name": "probe", "source": "adapters/probe"}],
    ("model", "vllm", "lora"): {"maxRank": 64},
    ("orchestration", "mode"): None,  # mode constrains tools; covered by the tools tests
    ("orchestration", "systemPrompt"): "Be brief.", ("orchestration", "promptTemplate"): "Q: {question}",
    ("orchestration", "maxSteps"): 9, ("orchestration", "timeouts"): {"requestSeconds": 33},
    ("retrieval", "collection", "distance"): "Dot", ("retrieval", "embedder", "provider"): None,
    ("retrieval", "embedder", "model"): "BAAI/bge-large-en-v1.5",
    ("retrieval", "embedder", "dimension"): 1024,
    ("retrieval", "topK"): 17, ("retrieval", "scoreThreshold"): 0.77, ("retrieval", "maxContextTokens"): 999,
    ("retrieval", "tenantField"): "team", ("retrieval", "chunking"): {"size": 500, "overlap": 50},
    ("guardrails", "input"): ["max_length"], ("guardrails", "output"): ["pii_mask"],
    ("guardrails", "policy"): "p",
    ("guardrails", "blockedTerms"): ["zzz"], ("guardrails", "maxInputChars"): 123,
    ("guardrails", "maxOutputChars"): 321, ("guardrails", "refusalMessage"): "No.",
    ("guardrails", "model"): {"name": "judge"}, ("guardrails", "configMapRef"): {"name": "rails"},
    ("guardrails", "failOpen"): True,
}


def test_every_promotable_path_changes_the_config_hash(example: Path) -> None:
    """The list and the hash agree: each listed path is part of the hash (where its layer exists)."""
    assert set(PROBES) == set(PROMOTABLE_PATHS)
    spec = spec_of(example)
    for path, probe in PROBES.items():
        layer_missing = (path[0] in ("retrieval", "guardrails") and path[0] not in spec) or (
            path[:2] == ("model", "vllm") and spec["model"]["provider"] != "vllm")
        if probe is None or layer_missing:
            continue
        changed = copy.deepcopy(spec)
        if path == ("model", "vllm", "tensorParallelSize"):
            put(changed, ("model", "vllm", "gpu", "count"), 4)
            assert hash_of(changed) != hash_of(spec)
            spec = copy.deepcopy(changed)
        put(changed, path, probe)
        assert hash_of(changed) != hash_of(spec), path


def test_combine_takes_behaviour_from_the_source_and_keeps_stage_fields(example: Path) -> None:
    target = merge_patch(spec_of(example), {"stage": "prod", "gateway": {"replicas": 5,
                                            "apiKeysSecretRef": {"name": "k", "key": "k"}}})
    source = merge_patch(spec_of(example),
                         {"stage": "dev", "gateway": {"replicas": 1, "apiKeysSecretRef": None},
                                            "orchestration": {"systemPrompt": "Be brief."},
                                            "model": {"defaults": {"temperature": 0.7}}})
    result = combine(source=source, target=target)
    assert hash_of(result.spec) == hash_of(source) != hash_of(target)
    assert result.spec["stage"] == "prod" and result.spec["gateway"] == target["gateway"]
    assert {c.path for c in result.changes} == {"orchestration.systemPrompt", "model.defaults"}
    assert result.reingest == []


def test_tools_move_by_name_and_keep_the_target_endpoint() -> None:
    tool = {"name": "lookup", "description": "old", "endpoint": "http://prod", "timeoutSeconds": 3,
            "authSecretRef": {"name": "s", "key": "k"}}
    base = {"model": {"provider": "openai", "name": "m", "openai": {"baseUrl": "https://x/v1",
                                                                    "apiKeySecretRef": {"name": "a",
                                                                                        "key": "b"}}},
            "orchestration": {"mode": "agent"}}
    target = merge_patch(base, {"orchestration": {"tools": [tool]}})
    source = merge_patch(base, {"orchestration": {"tools": [
        {**tool, "description": "new", "endpoint": "http://dev", "timeoutSeconds": 9, "authSecretRef": None},
        {"name": "extra", "description": "d", "endpoint": "http://dev-extra"},
    ]}})
    result = combine(source=source, target=target)
    lookup, extra = result.spec["orchestration"]["tools"]
    assert lookup == {**tool, "description": "new"}
    assert extra["endpoint"] == "http://dev-extra"
    assert any("tool 'extra' is new" in r for r in result.review)
    assert hash_of(result.spec) == hash_of(source)
    no_tools = combine(source=base, target=target)
    assert "tools" not in no_tools.spec["orchestration"]


def test_a_changed_tool_shows_its_changed_fields() -> None:
    """The diff read `orchestration.tools: ['order_status'] -> ['order_status']`."""
    from aistack.cli.promotion.fields import diff_promotable

    tool = {"name": "order_status", "description": "Look up an order.", "endpoint": "http://prod",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}
    other = {"name": "refund", "description": "Refund an order.", "endpoint": "http://prod-refund"}
    old = {"orchestration": {"mode": "agent", "tools": [tool, other]}}
    new = {"orchestration": {"mode": "agent", "tools": [
        {**tool, "description": "Look up an order by its id.", "endpoint": "http://dev"},
        {"name": "track", "description": "Track a parcel.", "endpoint": "http://dev-track"}]}}
    lines = [c.describe() for c in diff_promotable(old, new)]
    assert lines == [("orchestration.tools[order_status].description: 'Look up an order.' -> "
                      "'Look up an order by its id.'"),
                     "orchestration.tools[refund]: present -> (unset)",
                     "orchestration.tools[track]: (unset) -> present"], "the endpoint is the stage's"
    reordered = {"orchestration": {"mode": "agent", "tools": [other, tool]}}
    assert [c.describe() for c in diff_promotable(old, reordered)] == [
        "orchestration.tools (order): ['order_status', 'refund'] -> ['refund', 'order_status']"]
    params = {"orchestration": {"mode": "agent",
                                "tools": [{**tool, "parameters": {"type": "object"}}, other]}}
    assert [c.path for c in diff_promotable(old, params)] == ["orchestration.tools[order_status].parameters"]


def test_layers_come_and_go_with_the_source(example: Path) -> None:
    full = spec_of(Path(example).parent / "rag.yaml")
    bare = {k: v for k, v in full.items() if k not in ("retrieval", "guardrails")}
    bare["orchestration"] = {"mode": "pipeline"}
    added = combine(source=full, target=bare)
    assert added.spec["retrieval"] == full["retrieval"]
    assert added.reingest == ["retrieval is new in this stage: ingest its sources"]
    assert any(r.startswith("retrieval is new") for r in added.review)
    removed = combine(source=bare, target=full)
    assert "retrieval" not in removed.spec and "guardrails" not in removed.spec
    assert hash_of(removed.spec) == hash_of(bare)


def test_switching_provider_swaps_the_model_block() -> None:
    api = {"provider": "openai", "name": "gpt", "openai": {"baseUrl": "https://x/v1",
                                                           "apiKeySecretRef": {"name": "a", "key": "b"}}}
    vllm = {"provider": "vllm", "name": "Qwen/Q", "vllm": {"replicas": 3, "gpu": {"type": "nvidia-l4"}}}
    to_vllm = combine(source={"model": vllm}, target={"model": api})
    assert to_vllm.spec["model"] == vllm
    back = combine(source={"model": api}, target={"model": vllm})
    assert back.spec["model"] == api
    implicit = combine(source={"model": {"provider": "vllm", "name": "Qwen/Q"}}, target={"model": vllm})
    assert implicit.spec["model"]["vllm"] == {"replicas": 3,
                                              "gpu": {"type": "nvidia-l4"}}, "defaults: keep stage's"


@pytest.mark.parametrize(("change", "reason"), [
    ({"embedder": {"model": "BAAI/bge-base-en-v1.5"}}, "embedder changed"),
    ({"chunking": {"size": 400, "overlap": 40}}, "chunking changed"),
    ({"collection": {"distance": "Dot"}}, "vector distance changed"),
])
def test_changes_that_need_reingestion_are_flagged(change: dict[str, Any], reason: str) -> None:
    base = {"model": {"provider": "openai", "name": "m"},
            "retrieval": {"embedder": {"model": "sentence-transformers/all-MiniLM-L6-v2"}, "topK": 4}}
    result = combine(source=merge_patch(base, {"retrieval": change}), target=base)
    assert [r for r in result.reingest if r.startswith(reason)]
    batch_only = combine(source=merge_patch(base, {"retrieval": {"embedder": {"batchSize": 8}}}), target=base)
    assert batch_only.reingest == [] and batch_only.changes == []
