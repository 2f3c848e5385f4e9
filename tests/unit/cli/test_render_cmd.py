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
                                        "PersistentVolumeClaim", "HorizontalPodAutoscaler", "Job"}


def test_render_of_invalid_manifest_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((EXAMPLES / "quickstart.yaml").read_text().replace("provider: openai", "provider: tgi"))
    result = CliRunner().invoke(app, ["render", str(bad)])
    assert result.exit_code == 1
    assert "spec.model.provider" in result.stderr


def test_render_warns_on_stderr_of_a_path_the_cluster_cannot_read(tmp_path: Path) -> None:
    local = tmp_path / "rag.yaml"
    local.write_text((EXAMPLES / "rag.yaml").read_text().replace("        volume: {configMap: aistack-docs}\n", ""))
    result = CliRunner().invoke(app, ["render", str(local)])
    assert result.exit_code == 0, result.output
    assert "warning: retrieval.sources: 'docs' is a path with no volume" in result.stderr
    docs = list(yaml.safe_load_all(result.stdout))  # stdout is still only YAML
    assert "Job" not in {d["kind"] for d in docs}
