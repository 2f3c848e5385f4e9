"""`aistack ui` refuses what it cannot serve with the field or flag and what to do, before it
starts anything; a port out of range is refused by `ui --port` and `up --mlflow-port` alike."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aistack.cli.main import app

REPO = Path(__file__).resolve().parents[3]


def manifest(folder: Path, *, observability: dict | None) -> Path:
    stack = yaml.safe_load((REPO / "examples" / "rag.yaml").read_text())
    stack["spec"].pop("observability")
    if observability is not None:
        stack["spec"]["observability"] = observability
    path = folder / "stack.yaml"
    path.write_text(yaml.safe_dump(stack))
    return path


@pytest.mark.parametrize("command", [["ui", "--port"], ["up", "--mlflow-port"]])
def test_a_port_out_of_range_is_refused_naming_the_flag(tmp_path: Path, command: list[str]) -> None:
    path = manifest(tmp_path, observability={"mlflow": {"managed": {}}})
    result = CliRunner().invoke(app, [command[0], str(path), command[1], "70000"])
    assert result.exit_code == 2
    assert f"{command[1]}: 70000 is not a port (1-65535)" in result.output
    assert not (tmp_path / ".aistack").exists()  # refused before anything was created


def test_ui_of_a_stack_that_never_ran_says_to_run_up_first(tmp_path: Path) -> None:
    path = manifest(tmp_path, observability={"mlflow": {"managed": {}}})
    result = CliRunner().invoke(app, ["ui", str(path)])
    assert result.exit_code == 2
    assert "no MLflow data in" in result.output and f"run `aistack up {path}` first" in result.output


def test_ui_of_a_stack_without_tracing_names_the_field(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ui", str(manifest(tmp_path, observability=None))])
    assert result.exit_code == 2 and "spec.observability: the stack records no traces" in result.output


def test_ui_of_a_stack_on_an_external_mlflow_points_there(tmp_path: Path) -> None:
    path = manifest(tmp_path,
                    observability={"mlflow": {"external": {"trackingUri": "https://mlflow.example.com"}}})
    result = CliRunner().invoke(app, ["ui", str(path)])
    assert result.exit_code == 2
    assert "spec.observability.mlflow.external" in result.output
    assert "https://mlflow.example.com" in result.output
