"""Planning a promotion without MLflow or git: the finder is a plain function here."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from aistack.cli.promotion.gate import EvaluationRun
from aistack.cli.promotion.layout import scaffold
from aistack.cli.promotion.plan import PromotionError, plan

NOW = datetime(2026, 11, 26, tzinfo=UTC)
STACK = {
    "apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "rag"},
    "spec": {
        "model": {"provider": "openai", "name": "gpt-4o-mini",
                  "openai": {"baseUrl": "https://api.openai.com/v1",
                             "apiKeySecretRef": {"name": "o", "key": "k"}}},
        "observability": {"mlflow": {"managed": {}}},
        "evaluation": {"dataset": {"path": "eval.jsonl"}, "thresholds": {"answer_token_f1": {"min": 0.5}}},
    },
}


def edit(root: Path, stage: str, change: dict[str, Any]) -> None:
    """Deep-update a stage patch; a None stays in the file (kustomize then deletes the field)."""
    def update(node: dict[str, Any], patch: dict[str, Any]) -> None:
        for key, value in patch.items():
            if isinstance(value, dict) and isinstance(node.get(key), dict):
                update(node[key], value)
            else:
                node[key] = value

    path = root / "stages" / stage / "stage.yaml"
    doc = yaml.safe_load(path.read_text())
    update(doc, change)
    path.write_text(yaml.safe_dump(doc))


class Found:
    """A run finder that always finds a run with `metrics` and records the hashes it was asked for."""

    def __init__(self, metrics: dict[str, float]) -> None:
        self.metrics = metrics
        self.calls: list[str] = []

    def __call__(self, source: Any, target: Any, config_hash: str) -> EvaluationRun:
        self.calls.append(config_hash)
        return EvaluationRun("run-1", "exp", NOW, self.metrics)


def found(metrics: dict[str, float]) -> Found:
    return Found(metrics)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    scaffold(root=tmp_path / "d", stack_doc=STACK, stages=["dev", "prod"])
    return tmp_path / "d"


def test_nothing_to_promote_never_asks_for_a_run(root: Path) -> None:
    finder = found({})
    result = plan(root=root, source="dev", target="prod", find_run=finder, now=NOW, renderer="builtin")
    assert result.noop and finder.calls == []


def test_the_plan_holds_the_files_and_the_message(root: Path) -> None:
    edit(root, "dev", {"spec": {"model": {"defaults": {"temperature": 0.1}}}})
    finder = found({"answer_token_f1": 0.8})
    result = plan(root=root, source="dev", target="prod", find_run=finder, now=NOW, renderer="builtin")
    assert result.verdict.allowed and finder.calls == [result.config_hash]
    assert result.ops == [{"op": "add", "path": "/spec/model/defaults", "value": {"temperature": 0.1}}]
    assert "promoted.yaml" in result.files and not (root / "stages" / "prod" / "promoted.yaml").exists()
    message = result.commit_message()
    assert message.startswith(f"promote rag dev -> prod (config {result.config_hash})")
    assert "answer_token_f1 = 0.8 (needs >= 0.5): ok" in message and "Aistack-Run-Id: run-1" in message


def test_a_promotion_the_target_would_refuse_is_not_planned(root: Path) -> None:
    # prod keeps its fallback without `model`, which a vLLM model does not allow.
    edit(root, "prod", {"spec": {"model": {"fallback": {"baseUrl": "https://api.openai.com/v1",
                                                        "apiKeySecretRef": {"name": "o", "key": "k"}}}}})
    edit(root, "dev",
         {"spec": {"model": {"provider": "vllm", "name": "Qwen/Qwen2.5-7B-Instruct", "openai": None}}})
    with pytest.raises(PromotionError,
                       match=r"would be invalid in stage 'prod'(.|\n)*spec.model.fallback.model"):
        plan(root=root, source="dev", target="prod", find_run=found({}), now=NOW, renderer="builtin")


def test_stages_of_different_stacks_are_refused(root: Path) -> None:
    kustomization = root / "stages" / "prod" / "kustomization.yaml"
    doc = yaml.safe_load(kustomization.read_text())
    (root / "other.yaml").write_text(yaml.safe_dump({**STACK, "metadata": {"name": "other"}}))
    (root / "stages" / "prod" / "stage.yaml").write_text(yaml.safe_dump(
        {**STACK, "metadata": {"name": "other"},
         "spec": {"stage": "prod", "gateway": {"apiKeysSecretRef": {"name": "g", "key": "k"}}}}))
    doc["resources"] = ["../../other.yaml"]
    kustomization.write_text(yaml.safe_dump(doc))
    with pytest.raises(PromotionError, match="renders AIStack 'rag' but 'prod' renders 'other'"):
        plan(root=root, source="dev", target="prod", find_run=found({}), now=NOW, renderer="builtin")
