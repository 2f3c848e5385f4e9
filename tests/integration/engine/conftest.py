"""The real vLLM engine (its own virtualenv; `aistack engine install` or `make engine`): its parser in
one child process for the whole run, and one server for test_gateway.py, started as `aistack up`
starts the offline model (`offline_model_spec`: the prepared weights, the Hermes tool-call parser,
the CPU flags). Every test here skips, saying why, where the engine is not installed."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aistack.api.v1alpha1.model import ModelSpec
from aistack.runtime.engine.locate import Build, EngineLocation, detect_build
from aistack.runtime.engine.parser import ParserSession
from aistack.runtime.engine.server import EngineServer, local_command, local_environ
from aistack.runtime.local.engine_model import (EngineUnavailable, offline_model_spec, usable_engine,
                                                wait_ready)
from aistack.runtime.local.offline_model import OFFLINE_MODEL_NAME
from aistack.runtime.local.offline_weights import is_prepared, weights_folder
from aistack.runtime.local.ports import free_port

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


START_TIMEOUT_S = 600  # ~35 s on 2 idle cores, ~80 s on a loaded machine


@pytest.fixture(scope="module")
def engine_server(engine: EngineLocation, build: Build,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    """One vLLM server, serving the offline model as `aistack up` does. Module-scoped, and one module
    (test_gateway.py) uses it, so it is gone before test_up.py starts `aistack up`'s own engine."""
    folder = weights_folder()
    if not is_prepared(folder):
        pytest.skip(f"the offline weights are not prepared in {folder}: run `aistack engine install`")
    spec = offline_model_spec(ModelSpec(provider="vllm", name=OFFLINE_MODEL_NAME))
    port = free_port()
    log: Path = tmp_path_factory.mktemp("engine") / "vllm.log"
    command = local_command(engine, spec, build=build, host="127.0.0.1", port=port, weights=str(folder))
    base_url = f"http://127.0.0.1:{port}"
    with EngineServer(command, env=local_environ(build), log=log, base_url=base_url) as running:
        started = time.monotonic()
        asyncio.run(wait_ready(running, timeout_s=START_TIMEOUT_S))
        print(f"vLLM ready in {time.monotonic() - started:.0f} s")
        yield running
