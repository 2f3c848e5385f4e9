"""The built-in renderer gives what `kubectl kustomize` gives for the shapes aistack writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aistack.cli.promotion import overlay
from aistack.cli.promotion.kustomize import KustomizeError, merge_patch, render
from aistack.cli.promotion.layout import Layout, load_stack_doc, scaffold

AISTACK = {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "x"}}


def write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_merge_patch_merges_maps_replaces_lists_and_deletes_nulls() -> None:
    base = {"a": {"b": 1, "c": [1, 2], "d": {"e": 1}}, "f": [{"name": "x", "v": 1}, {"name": "y"}]}
    patch = {"a": {"c": [3], "d": {"e": None}, "g": 2}, "f": [{"name": "y", "v": 2}], "h": None}
    assert merge_patch(base, patch) == {"a": {"b": 1, "c": [3], "d": {}, "g": 2},
                                        "f": [{"name": "y", "v": 2}]}
    assert base["a"]["c"] == [1, 2], "the input is not modified"


def test_every_scaffolded_stage_renders_the_same_with_kubectl_and_builtin(
    example: Path, tmp_path: Path, kubectl: str
) -> None:
    layout = Layout(tmp_path / "deploy")
    scaffold(root=layout.root, stack_doc=load_stack_doc(example), stages=["dev", "staging", "prod"])
    for stage in layout.stages():
        folder = layout.stage_dir(stage)
        assert render(folder, renderer="builtin") == render(folder, renderer="kubectl")


def test_promoted_overlays_with_lists_and_removals_render_the_same(tmp_path: Path, kubectl: str) -> None:
    """The shapes kustomize treats specially for custom resources: lists of named maps, nulls."""
    base = {**AISTACK, "spec": {
        "model": {"provider": "vllm", "name": "m",
                  "vllm": {"extraArgs": ["--a", "--b"], "gpu": {"type": "l4"}}},
        "orchestration": {"tools": [{"name": "t1", "description": "d", "endpoint": "http://a"},
                                    {"name": "t2", "description": "d", "endpoint": "http://b"}]},
        "guardrails": {"input": ["max_length", "pii_mask"], "blockedTerms": ["x"]},
        "gateway": {"replicas": 1},
    }}
    write(tmp_path / "base" / "aistack.yaml", base)
    write(tmp_path / "base" / "kustomization.yaml", {"resources": ["aistack.yaml"]})
    stage = tmp_path / "stages" / "prod"
    write(stage / "stage.yaml", {**AISTACK, "spec": {
        "stage": "prod", "gateway": {"replicas": 3},
        "model": {"vllm": {"gpu": {"type": None}}},
        "orchestration": {"tools": [{"name": "t2", "description": "d", "endpoint": "http://prod"}]},
    }})
    write(stage / "kustomization.yaml", {"resources": ["../../base"], "patches": [{"path": "stage.yaml"}],
                                         "namespace": "ai-prod"})
    # "n" is a boolean to kustomize (YAML 1.1) unless quoted: the writer must quote it.
    ops = overlay.json_patch(base["spec"], {**base["spec"], "model": {"provider": "openai", "name": "n"},
                                            "guardrails": {"input": ["pii_mask"]}}, prefix="/spec")
    overlay.write(stage, ops=ops)
    builtin, real = render(stage, renderer="builtin"), render(stage, renderer="kubectl")
    assert builtin == real
    assert builtin[0]["metadata"]["namespace"] == "ai-prod"
    assert builtin[0]["spec"]["guardrails"] == {"input": ["pii_mask"]}
    assert real[0]["spec"]["model"] == {"provider": "openai", "name": "n"}


@pytest.mark.parametrize(("kustomization", "message"), [
    ({"resources": ["aistack.yaml"], "images": [{"name": "x"}]}, "images is not supported"),
    ({"resources": ["missing.yaml"]}, "resource 'missing.yaml' does not exist"),
    ({"resources": ["aistack.yaml"], "patches": [{"path": "ops.yaml"}]}, "a JSON 6902 patch needs a target"),
    ({"resources": ["aistack.yaml"], "patches": [{"path": "sm.yaml", "options": {"allowNameChange": True}}]},
     "need kubectl"),
    ({"resources": ["aistack.yaml"], "patches": [{"path": "directive.yaml"}]},
     "directive $patch needs kubectl"),
    ({"resources": ["aistack.yaml"], "patches": [{"path": "other.yaml"}]}, "matches no resource"),
    ({"resources": ["aistack.yaml"], "patches": [{"path": "bad-op.yaml", "target": {"kind": "AIStack"}}]},
     "bad-op.yaml"),
])
def test_builtin_refuses_what_it_cannot_render_faithfully(tmp_path: Path, kustomization: dict,
                                                          message: str) -> None:
    write(tmp_path / "aistack.yaml", {**AISTACK, "spec": {"model": {"provider": "vllm", "name": "m"}}})
    write(tmp_path / "ops.yaml", [{"op": "add", "path": "/spec/stage", "value": "qa"}])
    write(tmp_path / "sm.yaml", {**AISTACK, "spec": {"stage": "qa"}})
    write(tmp_path / "directive.yaml", {**AISTACK, "spec": {"$patch": "replace"}})
    write(tmp_path / "other.yaml", {**AISTACK, "metadata": {"name": "y"}, "spec": {"stage": "qa"}})
    write(tmp_path / "bad-op.yaml", [{"op": "remove", "path": "/spec/nothing"}])
    write(tmp_path / "kustomization.yaml", kustomization)
    with pytest.raises(KustomizeError, match=message.replace("$", r"\$")):
        render(tmp_path, renderer="builtin")


def test_a_folder_without_kustomization_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KustomizeError, match="has no kustomization.yaml"):
        render(tmp_path, renderer="builtin")


def test_kubectl_errors_are_reported(tmp_path: Path, kubectl: str) -> None:
    write(tmp_path / "kustomization.yaml", {"resources": ["missing.yaml"]})
    with pytest.raises(KustomizeError, match="kubectl kustomize .* failed"):
        render(tmp_path, renderer="kubectl")
