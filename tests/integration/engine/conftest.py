"""The real vLLM engine (its own virtualenv; `aistack engine install` or `make engine`): its parser in
one child process for the whole run, and one server started on the prepared offline weights.
Every test here skips, saying why, where the engine is not installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aistack.runtime.engine.install import is_installed
from aistack.runtime.engine.locate import Build, EngineLocation, detect_build, find_engine
from aistack.runtime.engine.parser import ParserSession

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def build() -> Build:
    return detect_build()


@pytest.fixture(scope="session")
def engine(build: Build) -> EngineLocation:
    found = find_engine(build)
    if found is None:
        pytest.skip("no vLLM engine installed: `aistack engine install` (or `make engine`) makes one")
    if not found.python.exists():
        pytest.skip(f"the vLLM engine {found.python} (from {found.source}) does not exist")
    if found.home is not None and not is_installed(found.home, build):
        pytest.skip(f"the vLLM engine in {found.home} is not (fully) installed: run `aistack engine install`")
    return found


@pytest.fixture(scope="session")
def real_parser(engine: EngineLocation) -> Iterator[ParserSession]:
    with ParserSession(engine.python) as session:
        yield session


@pytest.fixture(scope="session")
def examples() -> Path:
    return Path(__file__).resolve().parents[3] / "examples"
