"""One real vLLM server, started from the engine contract's local command on the prepared offline
weights, answers an OpenAI chat completion."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aistack.api.v1alpha1.model import ModelSpec
from aistack.runtime.engine.locate import Build, EngineLocation
from aistack.runtime.engine.server import EngineServer, local_command, local_environ
from aistack.runtime.local.engine_model import wait_ready
from aistack.runtime.local.offline_model import CONTEXT_TOKENS, OFFLINE_MODEL_NAME
from aistack.runtime.local.offline_weights import is_prepared, weights_folder
from aistack.runtime.local.ports import free_port

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 600  # ~80 s on a loaded 2-core machine


@pytest.fixture(scope="module")
def server(engine: EngineLocation, build: Build,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    folder = weights_folder()
    if not is_prepared(folder):
        pytest.skip(f"the offline weights are not prepared in {folder}: run `aistack engine install`")
    spec = ModelSpec.model_validate({"provider": "vllm", "name": OFFLINE_MODEL_NAME,
                                     "vllm": {"maxModelLen": CONTEXT_TOKENS}})
    port = free_port()
    log: Path = tmp_path_factory.mktemp("engine") / "vllm.log"
    command = local_command(engine, spec, build=build, host="127.0.0.1", port=port, weights=str(folder))
    base_url = f"http://127.0.0.1:{port}"
    with EngineServer(command, env=local_environ(build), log=log, base_url=base_url) as running:
        started = time.monotonic()
        asyncio.run(wait_ready(running, timeout_s=START_TIMEOUT_S))
        print(f"vLLM ready in {time.monotonic() - started:.0f} s")
        yield running


def test_the_engine_lists_the_served_name_and_answers_a_chat_completion(server: EngineServer) -> None:
    models = httpx.get(f"{server.base_url}/v1/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [OFFLINE_MODEL_NAME]
    reply = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=120, json={
        "model": OFFLINE_MODEL_NAME, "temperature": 0, "max_tokens": 16,
        "messages": [{"role": "user", "content": "What is the capital of France?"}]}).json()
    assert "Paris" in reply["choices"][0]["message"]["content"]
    assert reply["usage"]["completion_tokens"] <= 16
