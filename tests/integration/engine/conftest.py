"""The real vLLM engine (its own virtualenv; `aistack engine install` or `make engine`): its parser in
one child process for the whole run, and one server started on the prepared offline weights.
Every test here skips, saying why, where the engine is not installed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from aistack.runtime.engine.locate import Build, EngineLocation, detect_build
from aistack.runtime.engine.parser import ParserSession
from aistack.runtime.local.engine_model import EngineUnavailable, usable_engine

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def build() -> Build:
    return detect_build()


@pytest.fixture(scope="session")
def engine(build: Build) -> EngineLocation:
    try:
        return usable_engine(build)
    except EngineUnavailable as why:
        pytest.skip(str(why))


@pytest.fixture(scope="session")
def real_parser(engine: EngineLocation) -> Iterator[ParserSession]:
    with ParserSession(engine.python) as session:
        yield session


@pytest.fixture(scope="session")
def examples() -> Path:
    return Path(__file__).resolve().parents[3] / "examples"
