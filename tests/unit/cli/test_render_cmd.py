"""`aistack render FILE` prints valid YAML manifests, or field errors and exit 1."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from aistack.cli.main import app

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_render_prints_every_child_as_yaml() -> None:
    result = CliRunner().invoke(app, ["render", str(EXAMPLES / "production.yaml")])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert len(docs) == 14  # 11 serving objects, the manifest ConfigMap, the ingestion and evaluation Jobs
    assert {d["kind"] for d in docs} >= {"Deployment", "StatefulSet", "Service", "ConfigMap",
                                        "HorizontalPodAutoscaler", "Job"}  # per-pod model volumes: no PVC


def test_render_of_invalid_manifest_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "quickstart.yaml").read_text().replace("provider: openai", "provider: tgi"))
    result = CliRunner().invoke(app, ["render", str(bad)])
    assert result.exit_code == 1
    assert "spec.model.provider" in result.stderr


def test_render_errors_name_the_file_and_document_like_validate(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n"
                   + (EXAMPLES / "quickstart.yaml").read_text().replace("provider: openai", "provider: tgi"))
    rendered = CliRunner().invoke(app, ["render", str(bad)])
    validated = CliRunner().invoke(app, ["validate", "--quiet", str(bad)])
    assert rendered.exit_code == 1
    line = next(line for line in rendered.stderr.splitlines() if "spec.model.provider" in line)
    assert line.startswith(f"{bad}[1]: spec.model.provider: ")
    assert line in validated.stderr.splitlines()


def test_render_of_a_file_without_an_aistack_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = CliRunner().invoke(app, ["render", str(empty)])
    assert result.exit_code == 1
    assert f"no AIStack found in {empty}" in result.stderr


def test_render_of_two_stacks_names_both_documents(tmp_path: Path) -> None:
    two = tmp_path / "two.yaml"
    quickstart = (EXAMPLES / "quickstart.yaml").read_text()
    two.write_text(quickstart + "\n---\n" + quickstart)
    result = CliRunner().invoke(app, ["render", str(two)])
    assert result.exit_code == 1
    assert f"expected exactly one AIStack, found 2 ({two}[0], {two}[1])" in result.stderr


def test_render_warns_on_stderr_of_a_path_the_cluster_cannot_read(tmp_path: Path) -> None:
    local = tmp_path / "rag.yaml"
    local.write_text(
        (EXAMPLES / "rag.yaml").read_text().replace("        volume: {configMap: aistack-docs}\n", ""))
    result = CliRunner().invoke(app, ["render", str(local)])
    assert result.exit_code == 0, result.output
    assert "warning: retrieval.sources: 'docs' is a path with no volume" in result.stderr
    docs = list(yaml.safe_load_all(result.stdout))  # stdout is still only YAML
    assert "Job" not in {d["kind"] for d in docs}


AMBIGUOUS = ["on", "yes", "y", "n", "No", "TRUE", "1e3", "-2E-5", "0755", "0o17", "0x1F", "1.5", "~", "null"]


def test_strings_that_look_like_bools_or_numbers_read_back_as_strings(tmp_path: Path) -> None:
    """GitOps tools and kubectl read YAML 1.1 (`y`, `on` are booleans) or 1.2 (`1e3`, `0o17`
    are numbers): every such string must come out quoted."""
    manifest = yaml.safe_load((EXAMPLES / "production.yaml").read_text())
    selector = {f"aistack.dev/v{i}": value for i, value in enumerate(AMBIGUOUS)}
    manifest["spec"]["model"]["vllm"]["gpu"]["nodeSelector"] = selector
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(manifest))
    result = CliRunner().invoke(app, ["render", str(path)])
    assert result.exit_code == 0, result.output
    [model] = [d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "Deployment" and
               d["metadata"]["name"].endswith("-model")]
    rendered = model["spec"]["template"]["spec"]["nodeSelector"]
    assert {k: rendered[k] for k in selector} == selector
    for value in AMBIGUOUS:
        assert f"'{value}'" in result.stdout  # quoted: a YAML 1.2 reader sees a string too


def test_render_config_hash_prints_the_hash_promote_looks_for(tmp_path: Path) -> None:
    """The hash of a stage as `aistack promote` computes it, from a file or from standard input
    (`kubectl kustomize deploy/stages/dev | aistack render --config-hash -`)."""
    from aistack.api.config_hash import config_hash
    from aistack.cli.promotion.layout import Layout, effective_stack

    scaffold = CliRunner().invoke(app, ["init-gitops", str(tmp_path / "d"), "--from",
                                        str(EXAMPLES / "production.yaml")])
    assert scaffold.exit_code == 0, scaffold.output
    doc, stack = effective_stack(Layout(tmp_path / "d"), "dev")
    piped = CliRunner().invoke(app, ["render", "--config-hash", "-"], input=yaml.safe_dump(doc))
    assert piped.exit_code == 0, piped.output
    assert piped.stdout == f"{config_hash(stack.spec)}\n"
    from_file = CliRunner().invoke(app, ["render", "--config-hash", str(EXAMPLES / "production.yaml")])
    assert from_file.stdout == piped.stdout, "the stage's hash is the behaviour's: same as its source"
    empty = CliRunner().invoke(app, ["render", "--config-hash", "-"], input="")
    assert empty.exit_code == 1 and "no AIStack found in <stdin>" in empty.stderr


def test_a_canary_the_cluster_cannot_judge_on_the_evaluation_is_a_warning_not_an_error(
        tmp_path: Path) -> None:
    doc = yaml.safe_load((EXAMPLES / "canary.yaml").read_text())
    doc["spec"]["evaluation"]["dataset"] = {"path": "eval.jsonl"}
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump(doc))
    for command in (["render"], ["validate"]):
        result = CliRunner().invoke(app, [*command, str(path)])
        assert result.exit_code == 0, result.output
        assert "model.canary.analysis: the cluster judges the canary on the gateways' numbers only" in \
            result.stderr
    del doc["spec"]["evaluation"]
    path.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0 and "maxEvaluationRegression does nothing" in result.stderr
    # the example as it is: judged on both, nothing to warn about
    result = CliRunner().invoke(app, ["validate", str(EXAMPLES / "canary.yaml")])
    assert result.exit_code == 0 and "warning" not in result.stderr
