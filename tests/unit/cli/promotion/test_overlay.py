"""The promoted.yaml writer: minimal operations that reproduce the target exactly."""

from __future__ import annotations

from pathlib import Path

import jsonpatch
import pytest
import yaml

from aistack.cli.promotion import overlay
from aistack.cli.promotion.layout import PROMOTED_PATCH, STAGE_PATCH, stage_kustomization

OLD = {"model": {"name": "a", "vllm": {"extraArgs": ["--x"], "gpu": {"type": "l4"}}}, "a/b": 1, "t~": 1,
       "retrieval": {"topK": 4}}
NEW = {"model": {"name": "b", "vllm": {"extraArgs": [], "gpu": {"type": "l4"}}, "defaults": {"maxTokens": 9}},
       "a/b": 2, "t~": None, "guardrails": {"input": ["pii_mask"]}}


def test_operations_turn_old_into_new_and_touch_nothing_else() -> None:
    ops = overlay.json_patch(OLD, NEW)
    assert jsonpatch.apply_patch(OLD, ops) == NEW
    assert {op["path"] for op in ops} == {"/retrieval", "/model/name", "/model/vllm/extraArgs",
                                          "/model/defaults",
                                         "/a~1b", "/t~0", "/guardrails"}
    assert overlay.json_patch(NEW, NEW) == []


@pytest.mark.parametrize("value", ["n", "y", "on", "off", "yes", "No", "TRUE"])
def test_strings_kustomize_would_read_as_booleans_are_quoted(tmp_path: Path, value: str) -> None:
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(stage_kustomization(promoted=False)))
    overlay.write(tmp_path, ops=[{"op": "replace", "path": "/spec/model/name", "value": value}])
    assert f"value: '{value}'" in (tmp_path / PROMOTED_PATCH).read_text()


def test_write_adds_and_removes_only_its_own_patch(tmp_path: Path) -> None:
    kustomization = {**stage_kustomization(promoted=False), "namespace": "ai-qa"}
    kustomization["patches"].append({"path": "extra.yaml"})
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    overlay.write(tmp_path, ops=[{"op": "add", "path": "/spec/x", "value": 1}])
    written = yaml.safe_load((tmp_path / "kustomization.yaml").read_text())
    assert [p["path"] for p in written["patches"]] == [STAGE_PATCH, "extra.yaml", PROMOTED_PATCH]
    assert written["namespace"] == "ai-qa"
    overlay.write(tmp_path, ops=[])
    assert yaml.safe_load((tmp_path / "kustomization.yaml").read_text()) == kustomization
    assert not (tmp_path / PROMOTED_PATCH).exists()
