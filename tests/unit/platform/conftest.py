"""Fixtures of the platform tests: each stage's program run once under Pulumi's mocks."""

from __future__ import annotations

import pytest

from aistack.platform.testing import STAGES, Run, run_program, stage_config


@pytest.fixture(scope="session")
def stage_runs() -> dict[str, Run]:
    """Each stage's program run once for the session (a run takes about a second)."""
    return {stage: run_program(stage_config(stage), stack=stage) for stage in STAGES}
