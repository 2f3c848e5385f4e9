"""The Pulumi mocks harness takes the project folder from its caller and refuses one that is not
the aistack Pulumi project (it may be installed anywhere, so it cannot guess a checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aistack.testing.pulumi_mocks import run_program, stage_config

ROOT = Path(__file__).resolve().parents[3]


def test_a_folder_without_the_project_is_refused_naming_what_it_lacks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"has no Pulumi\.yaml and no stacks/__main__\.py"):
        stage_config("dev", project=tmp_path)
    (tmp_path / "Pulumi.yaml").write_text("name: aistack\n")
    with pytest.raises(ValueError, match=r"has no stacks/__main__\.py$"):
        run_program({}, stack="dev", project=tmp_path)


def test_stage_config_reads_the_callers_project() -> None:
    config = stage_config("dev", project=ROOT)
    assert config["aistack:stage"] == "dev" and config["aws:region"] == "us-west-2"
    # objects as JSON, as the engine hands them to a program
    assert all(isinstance(value, str) for value in config.values())
