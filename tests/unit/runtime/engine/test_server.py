"""The local command: the engine contract's flags plus host and port, and on the CPU float32 and eager
mode unless the spec says otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aistack.api.v1alpha1.model import ModelSpec
from aistack.runtime.engine.locate import EngineLocation
from aistack.runtime.engine.server import local_command, local_environ

ENGINE = EngineLocation(python=Path("/e/bin/python"), source="the cache", home=Path("/e"))


def command(build: Any = "cpu", **vllm: Any) -> list[str]:
    spec = ModelSpec.model_validate({"provider": "vllm", "name": "org/m", "servedName": "m", "vllm": vllm})
    return local_command(ENGINE, spec, build=build, host="127.0.0.1", port=8123, weights="/w")


def test_the_cpu_command_runs_the_module_with_the_contract_then_float32_and_eager() -> None:
    assert command(maxModelLen=2048) == [
        "/e/bin/python", "-m", "vllm.entrypoints.openai.api_server",
        "--model", "/w", "--served-model-name", "m", "--host", "127.0.0.1", "--port", "8123",
        "--max-model-len", "2048", "--dtype", "float32", "--enforce-eager"]


def test_what_the_spec_sets_wins_over_the_cpu_defaults() -> None:
    args = command(dtype="bfloat16", extraArgs=["-O3"])
    assert args.count("--dtype") == 1 and args[args.index("--dtype") + 1] == "bfloat16"
    assert "--enforce-eager" not in args
    assert "--enforce-eager" not in command(extraArgs=["--compilation-config", "{}"])


def test_the_cuda_command_adds_only_where_to_listen() -> None:
    assert command("cuda")[3:] == ["--model", "/w", "--served-model-name", "m", "--host", "127.0.0.1",
                                   "--port", "8123"]


def test_the_cpu_engine_gets_a_bounded_kv_cache_unless_one_is_set() -> None:
    assert local_environ("cpu", {})["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert local_environ("cpu", {"VLLM_CPU_KVCACHE_SPACE": "4"})["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert "VLLM_CPU_KVCACHE_SPACE" not in local_environ("cuda", {})
