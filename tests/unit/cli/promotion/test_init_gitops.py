"""`aistack init-gitops`: the scaffold renders to one valid AIStack per stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from aistack.api.config_hash import config_hash
from aistack.cli.main import app
from aistack.cli.promotion.kustomize import Renderer
from aistack.cli.promotion.layout import Layout, effective_stack

ROOT = Path(__file__).resolve().parents[4]
RENDERERS: tuple[Renderer, ...] = ("builtin", "auto")


def test_scaffold_gives_each_stage_a_valid_stack_with_its_own_fields(example: Path, tmp_path: Path) -> None:
    target = tmp_path / "deploy"
    result = CliRunner().invoke(app, ["init-gitops", str(target), "--from", str(example)])
    assert result.exit_code == 0, result.output
    layout = Layout(target)
    assert layout.stages() == ["dev", "prod", "staging"]
    assert sorted(p.name for p in layout.stage_dir("dev").iterdir()) == ["kustomization.yaml", "stage.yaml"]
    hashes = set()
    for stage in layout.stages():
        for renderer in RENDERERS:
            _, stack = effective_stack(layout, stage, renderer=renderer)
            assert stack.spec.stage == stage
            hashes.add(config_hash(stack.spec))
        assert f"stage {stage}: AIStack" in result.output
    assert len(hashes) == 1, "a fresh scaffold runs the same behaviour in every stage"
    _, prod = effective_stack(layout, "prod")
    assert prod.spec.gateway.api_keys_secret_ref is not None, "a prod gateway is never open"


def test_stage_patches_show_the_stage_owned_fields(tmp_path: Path) -> None:
    CliRunner().invoke(app, ["init-gitops", str(tmp_path / "d"), "--from",
                             str(ROOT / "examples" / "production.yaml"),
                             "--stages", "qa,prod"])
    patch = yaml.safe_load((tmp_path / "d" / "stages" / "qa" / "stage.yaml").read_text())["spec"]
    assert patch["stage"] == "qa"
    assert patch["model"]["vllm"] == {"replicas": 2, "gpu": {"type": "nvidia-l4"}}
    assert patch["gateway"]["apiKeysSecretRef"] == {"name": "support-copilot-keys", "key": "keys"}
    assert set(patch["evaluation"]) == {"thresholds", "maxRunAgeHours"}
    assert "name" not in patch["model"], "behaviour stays in the base"


def test_refuses_to_overwrite_an_existing_scaffold(tmp_path: Path) -> None:
    args = ["init-gitops", str(tmp_path / "d"), "--from", str(ROOT / "examples" / "quickstart.yaml")]
    assert CliRunner().invoke(app, args).exit_code == 0
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "already has" in again.output


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: aistack.dev/v1alpha1\nkind: AIStack\nmetadata: {name: x}\nspec: {}\n")
    missing_model = CliRunner().invoke(app, ["init-gitops", str(tmp_path / "d"), "--from", str(bad)])
    assert missing_model.exit_code == 1 and "spec.model" in missing_model.output
    assert not (tmp_path / "d").exists(), "nothing written for an invalid manifest"
    two = tmp_path / "two.yaml"
    two.write_text((ROOT / "examples" / "quickstart.yaml").read_text() + "\n---\n"
                   + (ROOT / "examples" / "rag.yaml").read_text())
    assert "expected exactly one AIStack, found 2" in CliRunner().invoke(
        app, ["init-gitops", str(tmp_path / "d"), "--from", str(two)]).output
    dup = CliRunner().invoke(app, ["init-gitops", str(tmp_path / "d"), "--from", str(bad), "--stages",
                                   "dev,dev"])
    assert dup.exit_code == 2 and "distinct" in dup.output
    nofile = CliRunner().invoke(app, ["init-gitops", str(tmp_path / "d"), "--from",
                                      str(tmp_path / "none.yaml")])
    assert nofile.exit_code == 1 and "none.yaml" in nofile.output


def test_kubectl_renders_the_scaffold(tmp_path: Path, kubectl: str) -> None:
    """What Argo CD / Flux will do: `kubectl kustomize stages/<stage>` gives the AIStack."""
    subprocess.run([sys.executable, "-m", "aistack.cli", "init-gitops", str(tmp_path / "d"), "--from",
                    str(ROOT / "examples" / "rag.yaml")], check=True, capture_output=True)
    out = subprocess.run([kubectl, "kustomize", str(tmp_path / "d" / "stages" / "prod")],
                         check=True, capture_output=True, text=True).stdout
    (doc,) = list(yaml.safe_load_all(out))
    assert doc["kind"] == "AIStack" and doc["spec"]["stage"] == "prod"


def test_the_shipped_example_renders_each_stage_and_the_gitops_tools_point_at_it() -> None:
    layout = Layout(ROOT / "deploy" / "gitops" / "example")
    assert layout.stages() == ["dev", "prod", "staging"]
    for stage in layout.stages():
        for renderer in RENDERERS:
            doc, stack = effective_stack(layout, stage, renderer=renderer)
            assert stack.spec.stage == stage and stack.namespace == f"ai-{stage}"
    apps = list(yaml.safe_load_all(
        (ROOT / "deploy" / "gitops" / "argocd" / "applications.yaml").read_text()))
    assert {a["spec"]["source"]["path"] for a in apps} == {f"deploy/gitops/example/stages/{s}"
                                                           for s in layout.stages()}
    assert all(a["spec"]["destination"]["namespace"] == f"ai-{a['metadata']['labels']['aistack.dev/stage']}"
               for a in apps)
    assert "automated" not in next(a for a in apps
                                   if a["metadata"]["name"].endswith("-prod"))["spec"]["syncPolicy"]
    appset = yaml.safe_load((ROOT / "deploy" / "gitops" / "argocd" / "applicationset.yaml").read_text())
    elements = appset["spec"]["generators"][0]["list"]["elements"]
    assert sorted(e["stage"] for e in elements) == layout.stages()
    flux = [d for d in yaml.safe_load_all(
        (ROOT / "deploy" / "gitops" / "flux" / "kustomizations.yaml").read_text())
            if d["kind"] == "Kustomization"]
    assert sorted(k["spec"]["path"] for k in flux) == sorted(f"./deploy/gitops/example/stages/{s}"
                                                           for s in layout.stages())
