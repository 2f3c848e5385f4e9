"""Which model `aistack up` gives the local vLLM engine, with which flags, and what it says when
there is no engine to give it to. (The engine itself runs in tests/integration/engine.)"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from aistack.api.engine import check_extra_args
from aistack.api.manifests import load_stack, parse_stack
from aistack.runtime.engine.locate import EngineLocation
from aistack.runtime.engine.server import EngineServer, local_command
from aistack.runtime.local import engine_model
from aistack.runtime.local.engine_model import EngineUnavailable, offline_model_spec, plan, usable_engine
from aistack.runtime.local.offline_model import CONTEXT_TOKENS, OFFLINE_MODEL_NAME

EXAMPLES = Path(__file__).resolve().parents[4] / "examples"
ENGINE = EngineLocation(python=Path("/engine/bin/python"), source="the cache", home=None)


def flags(command: list[str]) -> list[str]:
    return command[command.index("vllm.entrypoints.openai.api_server") + 1:]


def test_on_the_cpu_the_offline_weights_run_with_the_flags_a_vllm_spec_gives_the_cluster() -> None:
    chosen = plan(load_stack(EXAMPLES / "production.yaml"), "cpu", weights=Path("/cache/weights"))
    assert chosen.offline and chosen.weights == "/cache/weights"
    args = flags(local_command(ENGINE, chosen.model, build="cpu", host="127.0.0.1", port=9000,
                               weights=chosen.weights))
    assert args[:4] == ["--model", "/cache/weights", "--served-model-name", OFFLINE_MODEL_NAME]
    assert args[args.index("--max-model-len") + 1] == str(CONTEXT_TOKENS)
    assert args[args.index("--tool-call-parser") + 1] == "hermes"  # the offline template's format
    assert "--enable-prefix-caching" in args  # the spec's extraArgs
    assert "--enforce-eager" in args and args[args.index("--dtype") + 1] == "float32"
    assert check_extra_args(args[args.index("--max-model-len"):]) == [
        (i, f"{flag} is set by aistack from {field}; remove it here")
        for i, flag, field in ((0, "--max-model-len", "maxModelLen"), (2, "--enable-auto-tool-choice",
                                                                      "toolCallParser"),
                               (3, "--tool-call-parser", "toolCallParser"), (6, "--dtype", "dtype"))]


def test_an_api_spec_gets_the_offline_model_with_plain_flags_and_a_cuda_vllm_spec_its_own_model() -> None:
    rag = plan(load_stack(EXAMPLES / "rag.yaml"), "cpu", weights=Path("/w"))
    assert rag.offline and rag.model.vllm is not None and rag.model.vllm.extra_args == []
    assert rag.model.vllm.tool_call_parser == "hermes"  # an API spec's agent can call tools offline too
    production = load_stack(EXAMPLES / "production.yaml")
    cuda = plan(production, "cuda", weights=Path("/w"))
    assert not cuda.offline and cuda.weights is None and cuda.model == production.spec.model
    assert plan(load_stack(EXAMPLES / "rag.yaml"), "cuda", weights=Path("/w")).offline


def test_the_offline_model_parses_hermes_tool_calls_whatever_the_specs_model_writes() -> None:
    doc = {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s"},
           "spec": {"model": {"provider": "vllm", "name": "meta-llama/Llama-3.1-8B-Instruct",
                              "vllm": {"toolCallParser": "llama3_json"}}}}
    assert offline_model_spec(parse_stack(doc).spec.model).vllm.tool_call_parser == "hermes"


def test_a_longer_spec_context_is_capped_at_the_offline_models() -> None:
    doc = {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s"},
           "spec": {"model": {"provider": "vllm", "name": "m", "vllm": {"maxModelLen": 32768}}}}
    assert offline_model_spec(parse_stack(doc).spec.model).vllm.max_model_len == CONTEXT_TOKENS


def test_no_engine_says_how_to_install_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AISTACK_CACHE", str(tmp_path))
    monkeypatch.delenv("AISTACK_VLLM_PYTHON", raising=False)
    monkeypatch.delenv("AISTACK_ENGINE_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineUnavailable, match="not installed: `aistack engine install`"):
        usable_engine("cpu")
    monkeypatch.setenv("AISTACK_VLLM_PYTHON", str(tmp_path / "nowhere" / "python"))
    with pytest.raises(EngineUnavailable, match="from AISTACK_VLLM_PYTHON.*does not exist"):
        usable_engine("cpu")
    monkeypatch.delenv("AISTACK_VLLM_PYTHON")
    home = tmp_path / "engine"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.setenv("AISTACK_ENGINE_HOME", str(home))
    with pytest.raises(EngineUnavailable, match="not fully installed"):
        usable_engine("cpu")  # a venv without the install's stamp (an install that stopped half way)


def test_an_engine_that_exits_while_starting_is_one_line_naming_its_log(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    server = EngineServer([sys.executable, "-c", "print('ValueError: No such model'); raise SystemExit(3)"],
                          env={}, log=log, base_url="http://127.0.0.1:9")
    with pytest.raises(EngineUnavailable) as error:
        asyncio.run(engine_model.wait_ready(server, timeout_s=30))
    assert str(
        error.value) == (f"the vLLM engine exited with code 3 while starting (ValueError: No such model): "
                                f"see {log}")


def test_an_engine_that_never_answers_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    server = EngineServer([sys.executable, "-c", "import time; time.sleep(60)"], env={},
                          log=tmp_path / "engine.log", base_url="http://127.0.0.1:9")
    with pytest.raises(EngineUnavailable, match="did not answer /health within 1 s"):
        asyncio.run(engine_model.wait_ready(server, timeout_s=1))
    assert server.exit_code() is not None  # stopped, not left behind
