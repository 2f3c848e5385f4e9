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


def test_each_stage_renders_into_a_namespace_of_its_own(example: Path, tmp_path: Path) -> None:
    """Stages on one cluster (the shipped ApplicationSet) must not share an AIStack: the manifest's
    namespace with its stage suffix replaced, else `<namespace>-<stage>`, `aistack-<stage>` without one."""
    target = tmp_path / "deploy"
    assert CliRunner().invoke(app, ["init-gitops", str(target), "--from", str(example)]).exit_code == 0
    declared = (yaml.safe_load(example.read_text()).get("metadata") or {}).get("namespace")
    expected = {"ai-prod": "ai-{}", None: "aistack-{}"}[declared]
    for renderer in RENDERERS:
        placed = {stage: effective_stack(Layout(target), stage, renderer=renderer)[1].namespace
                  for stage in ("dev", "staging", "prod")}
        assert placed == {stage: expected.format(stage) for stage in placed}


def test_namespace_option_places_a_stage(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["init-gitops", str(tmp_path / "d"), "--from",
                                      str(ROOT / "examples" / "production.yaml"),
                                      "--namespace", "dev=team-a-sandbox", "--namespace", "prod=support"])
    assert result.exit_code == 0, result.output
    placed = {stage: effective_stack(Layout(tmp_path / "d"), stage)[1].namespace
              for stage in ("dev", "staging", "prod")}
    assert placed == {"dev": "team-a-sandbox", "staging": "ai-staging", "prod": "support"}
    assert "stage dev: AIStack team-a-sandbox/support-copilot valid" in result.output


def test_a_suffix_is_replaced_whichever_stage_the_manifest_names(tmp_path: Path) -> None:
    from aistack.cli.promotion.layout import stage_namespaces

    def doc(namespace: str, stage: str = "prod") -> dict[str, object]:
        return {"metadata": {"name": "s", "namespace": namespace}, "spec": {"stage": stage}}

    assert stage_namespaces(doc("ai-prod"), stages=["qa", "prod"]) == {"qa": "ai-qa", "prod": "ai-prod"}
    assert stage_namespaces(doc("ai-staging", "staging"), stages=["dev", "prod"]) == {
        "dev": "ai-dev", "prod": "ai-prod"}
    assert stage_namespaces(doc("ai-eu-prod"), stages=["prod", "eu-prod"]) == {
        "prod": "ai-prod", "eu-prod": "ai-eu-prod"}
    assert stage_namespaces(doc("support", "dev"), stages=["dev", "prod"]) == {
        "dev": "support-dev", "prod": "support-prod"}


def test_two_stages_in_one_namespace_are_refused(tmp_path: Path) -> None:
    source = str(ROOT / "examples" / "production.yaml")
    same = CliRunner().invoke(app, ["init-gitops", str(tmp_path / "d"), "--from", source,
                                    "--namespace", "dev=ai-prod"])
    assert same.exit_code == 2
    assert "stages 'dev' and 'prod' would both render their AIStack into namespace 'ai-prod'" in same.output
    assert not (tmp_path / "d").exists(), "nothing written"
    for option, message in [("qa=ai-qa", "no stage 'qa'"), ("dev", "expected STAGE=NAMESPACE"),
                            ("dev=Not_A_Namespace", "'Not_A_Namespace' of stage 'dev' is not a namespace"),
                            ("dev=", "expected STAGE=NAMESPACE")]:
        refused = CliRunner().invoke(app, ["init-gitops", str(tmp_path / "d"), "--from", source,
                                           "--namespace", option])
        assert refused.exit_code == 2 and message in refused.output, (option, refused.output)
    assert not (tmp_path / "d").exists()
    twice = CliRunner().invoke(app, ["init-gitops", str(tmp_path / "d"), "--from", source,
                                     "--namespace", "dev=a", "--namespace", "dev=b"])
    assert twice.exit_code == 2 and "given twice" in twice.output


def test_the_committed_example_is_what_the_command_writes(tmp_path: Path) -> None:
    """deploy/gitops/example is `aistack init-gitops deploy/gitops/example --from
    examples/production.yaml` (regenerate with `make gitops-example`)."""
    committed = ROOT / "deploy" / "gitops" / "example"
    result = CliRunner().invoke(app, ["init-gitops", str(tmp_path / "example"), "--from",
                                      str(ROOT / "examples" / "production.yaml")])
    assert result.exit_code == 0, result.output
    written = {p.relative_to(tmp_path / "example"): p.read_text() for p in (tmp_path / "example").rglob("*")
               if p.is_file()}
    shipped = {p.relative_to(committed): p.read_text() for p in committed.rglob("*") if p.is_file()}
    assert sorted(map(str, shipped)) == sorted(map(str, written)), "regenerate with `make gitops-example`"
    for path, text in written.items():
        assert shipped[path] == text, f"{path} differs; regenerate with `make gitops-example`"


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


def test_a_production_stage_by_any_of_its_names_gets_gateway_keys(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["init-gitops", str(tmp_path / "d"), "--from",
                                      str(ROOT / "examples" / "quickstart.yaml"),
                                      "--stages", "dev,production"])
    assert result.exit_code == 0, result.output
    _, production = effective_stack(Layout(tmp_path / "d"), "production")
    assert production.spec.gateway.api_keys_secret_ref is not None, "a production gateway is never open"
    _, dev = effective_stack(Layout(tmp_path / "d"), "dev")
    assert dev.spec.gateway.api_keys_secret_ref is None


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
    # Each stage goes to the namespace it renders into, so stages on one cluster never share one.
    rendered = {stage: effective_stack(layout, stage)[1].namespace for stage in layout.stages()}
    assert len(set(rendered.values())) == len(rendered)
    assert {e["stage"]: e["namespace"] for e in elements} == rendered
    assert {a["metadata"]["labels"]["aistack.dev/stage"]: a["spec"]["destination"]["namespace"]
            for a in apps} == rendered
    assert {k["metadata"]["name"].rsplit("-", 1)[1]: k["spec"]["healthChecks"][0]["namespace"]
            for k in flux} == rendered
