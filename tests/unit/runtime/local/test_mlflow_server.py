"""`aistack up` needs the full MLflow server, which the `runtime` extra (mlflow-skinny) lacks:
without it, up serves on without traces and says how to get them, instead of starting a child
process that exits at once."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from aistack.runtime.local import mlflow_server
from aistack.runtime.local.runner import LocalStack, UpOptions

REPO = Path(__file__).resolve().parents[4]


def test_full_mlflow_server_is_installed_in_the_dev_environment() -> None:
    assert mlflow_server.missing_server_packages() == []


def test_missing_server_packages_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flask" else real(name, *a))
    assert mlflow_server.missing_server_packages() == ["flask"]


def test_up_without_the_mlflow_server_turns_tracing_off_and_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("aistack.runtime.local.runner.missing_server_packages", lambda: ["flask", "sqlalchemy"])
    stack = LocalStack(REPO / "examples" / "rag.yaml", UpOptions(state=tmp_path))
    assert stack.stack.spec.observability is not None and stack.stack.spec.observability.mlflow.managed is not None
    assert stack._start_mlflow() is None
    assert stack._mlflow is None
    assert stack.status.mlflow_state == "not installed"
    assert any("flask, sqlalchemy missing" in note and "aistack[local]" in note for note in stack.status.notes)
