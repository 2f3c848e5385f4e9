"""Fixtures of the platform tests: each stage's program run once under Pulumi's mocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from aistack.testing.pulumi_mocks import STAGES, Run, run_program, stage_config

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def stage_runs() -> dict[str, Run]:
    """Each stage's program run once for the session (a run takes about a second)."""
    return {stage: run_program(stage_config(stage, project=ROOT), stack=stage, project=ROOT)
            for stage in STAGES}
