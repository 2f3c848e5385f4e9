"""LoRA adapters on the real vLLM engine, through the adapter agent (`aistack.runtime.engine.
adapter_agent`): two tiny peft adapters of the offline model (`aistack.testing.lora`) answer
differently from the base and from each other at temperature 0; an adapter added to the list is
loaded into the running engine (same process, never restarted) and serves; one removed leaves
`/v1/models`; one whose rank is over the engine's maximum is Failed with the reason and never
loaded. Run under the engine lock: `flock /tmp/aistack-engine.lock nice .venv/bin/python -m pytest
tests/integration/engine/test_adapters.py`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aistack.api.adapters import adapter_list
from aistack.api.v1alpha1.model import Adapter, LoraSpec, ModelSpec, VllmSpec
from aistack.runtime.engine.adapter_agent import AdapterAgent
from aistack.runtime.engine.locate import Build, EngineLocation
from aistack.runtime.engine.server import EngineServer, local_command, local_environ
from aistack.runtime.local.engine_model import offline_model_spec, wait_ready
from aistack.runtime.local.offline_model import OFFLINE_MODEL_NAME
from aistack.runtime.local.offline_weights import is_prepared, weights_folder
from aistack.runtime.local.ports import free_port

pytestmark = pytest.mark.timeout(900)
START_TIMEOUT_S = 600
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder standing for the model cache: adapters/a, adapters/b (rank 8), adapters/wide (16)."""
    pytest.importorskip("peft")
    from aistack.testing.lora import make_adapter

    folder = weights_folder()
    if not is_prepared(folder):
        pytest.skip(f"the offline weights are not prepared in {folder}: run `aistack engine install`")
    root = tmp_path_factory.mktemp("cache")
    make_adapter(folder, root / "adapters" / "a", seed=1)
    make_adapter(folder, root / "adapters" / "b", seed=2)
    make_adapter(folder, root / "adapters" / "wide", seed=3, rank=16)
    return root


@pytest.fixture(scope="module")
def lora_engine(engine: EngineLocation, build: Build, adapters: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    """The offline model with LoRA on (max rank 8) and no adapter: the agent loads them all."""
    spec = offline_model_spec(ModelSpec(provider="vllm", name=OFFLINE_MODEL_NAME,
                                        vllm=VllmSpec(lora=LoraSpec(max_rank=8, max_adapters=4))))
    port = free_port()
    log = tmp_path_factory.mktemp("engine") / "vllm.log"
    command = local_command(engine, spec, build=build, host="127.0.0.1", port=port,
                            weights=str(weights_folder()))
    assert "--enable-lora" in command and "--lora-modules" not in command
    with EngineServer(command, env=local_environ(build, lora=True), log=log,
                      base_url=f"http://127.0.0.1:{port}") as running:
        asyncio.run(wait_ready(running, timeout_s=START_TIMEOUT_S))
        yield running


def write_list(path: Path, *names: str) -> None:
    model = ModelSpec(provider="vllm", name=OFFLINE_MODEL_NAME, vllm=VllmSpec(
        lora=LoraSpec(max_rank=8, max_adapters=4),
        adapters=[Adapter(name=n, source=f"adapters/{n}") for n in names]))
    path.write_text(adapter_list(model).model_dump_json(by_alias=True))


def served(base_url: str) -> set[str]:
    return {m["id"] for m in httpx.get(f"{base_url}/v1/models", timeout=10).json()["data"]}


def answer(base_url: str, model: str) -> str:
    response = httpx.post(f"{base_url}/v1/completions", timeout=120, json={
        "model": model, "prompt": PROMPT, "max_tokens": 12, "temperature": 0})
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["text"])


def test_the_agent_loads_and_unloads_adapters_in_the_running_engine(lora_engine: EngineServer, adapters: Path,
                                                                    tmp_path: Path) -> None:
    base_url = lora_engine.base_url
    pid = lora_engine.process.pid
    config, report = tmp_path / "adapters.json", tmp_path / "report.json"
    agent = AdapterAgent(config=config, engine_url=f"{base_url}/v1", root=str(adapters), report=report)
    try:
        write_list(config, "a")
        first = agent.sync()
        assert first is not None and [(s.name, s.phase) for s in first.adapters] == [("a", "Loaded")]
        assert served(base_url) == {OFFLINE_MODEL_NAME, "a"}

        write_list(config, "a", "b")  # added to the running engine
        started = time.monotonic()
        second = agent.sync()
        print(f"adapter b loaded in {time.monotonic() - started:.2f} s")
        assert second is not None and [(s.name, s.phase) for s in second.adapters] == [("a", "Loaded"),
                                                                                        ("b", "Loaded")]
        assert served(base_url) == {OFFLINE_MODEL_NAME, "a", "b"}
        answers = {model: answer(base_url, model) for model in (OFFLINE_MODEL_NAME, "a", "b")}
        print(answers)
        assert len(set(answers.values())) == 3, answers
        assert lora_engine.process.pid == pid and lora_engine.exit_code() is None  # no restart

        write_list(config, "b", "wide")  # a removed, wide over the engine's max rank
        third = agent.sync()
        assert third is not None
        states = {s.name: s for s in third.adapters}
        assert states["b"].phase == "Loaded"
        assert states["wide"].phase == "Failed" and "rank 16" in (states["wide"].reason or "") \
            and "lora.maxRank (8)" in (states["wide"].reason or "")
        assert served(base_url) == {OFFLINE_MODEL_NAME, "b"}
        gone = httpx.post(f"{base_url}/v1/completions", timeout=60,
                          json={"model": "a", "prompt": PROMPT, "max_tokens": 4})
        assert gone.status_code == 404
        assert answer(base_url, "b") == answers["b"]
        assert json.loads(report.read_text())["adapters"][1]["phase"] == "Failed"
        assert agent.sync() == third  # a Failed adapter is not tried again while its entry stays
        assert lora_engine.process.pid == pid and lora_engine.exit_code() is None
    finally:
        agent.close()
