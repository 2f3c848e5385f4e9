"""`aistack up`'s local model on the real vLLM engine: which model, which flags, started and watched.

Where no endpoint of the spec answers, the local model is the offline SmolLM2-135M served by vLLM
(its own virtualenv, `aistack engine install`) from the prepared weights folder, with the engine
flags the spec's vLLM section gives the cluster (extraArgs; its context capped at the model's 2048
tokens; tool calls always in the Hermes format its chat template writes). Where an NVIDIA driver
is loaded and the spec serves a vLLM model, the CUDA build serves that model itself (downloading it
unless HF_HUB_OFFLINE is set). The engine runs as a child process in its own process group, its
output in `<state>/engine.log`; every way it can fail ends in `EngineUnavailable`, one line that
says what failed, the log, and what to do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aistack.api.engine import VLLM_VERSION
from aistack.api.v1alpha1 import AIStack
from aistack.api.v1alpha1.model import ModelSpec, VllmSpec
from aistack.runtime.engine.install import is_installed
from aistack.runtime.engine.locate import Build, EngineLocation, find_engine
from aistack.runtime.engine.server import EngineServer, local_command, local_environ
from aistack.runtime.local.chat_template import TOOL_CALL_PARSER
from aistack.runtime.local.offline_model import CONTEXT_TOKENS, OFFLINE_MODEL_NAME
from aistack.runtime.local.ports import free_port

EngineChoice = Literal["auto", "vllm", "transformers"]
"""`auto`: vLLM where it is installed, else transformers (labelled); `vllm`: vLLM or fail;
`transformers`: the offline model in-process, as before the engine existed."""
START_TIMEOUT_S = 300.0
"""Ready in ~23 s on 2 idle cores with the offline model (measured); a loaded machine or a first
start that compiles kernels takes longer."""
INSTALL_HINT = "`aistack engine install` (or `make engine`) installs it"


class EngineUnavailable(RuntimeError):
    """The engine cannot serve: one line with what failed, its log where there is one, what to do."""


@dataclass(frozen=True)
class EnginePlan:
    model: ModelSpec
    """What the engine is started with (`server_args` reads it)."""
    weights: str | None
    """The prepared offline weights folder, or None to load `model.name`."""
    offline: bool


def offline_model_spec(spec: ModelSpec) -> ModelSpec:
    """The offline model as a vLLM model spec, keeping the engine behaviour a vLLM spec sets, except
    the tool-call format: the offline model's chat template writes Hermes tool calls, whatever
    format the spec's own model uses, so its engine always parses them with `hermes`."""
    vllm = spec.vllm
    return ModelSpec(provider="vllm", name=OFFLINE_MODEL_NAME, vllm=VllmSpec(
        max_model_len=min(vllm.max_model_len or CONTEXT_TOKENS, CONTEXT_TOKENS) if vllm else CONTEXT_TOKENS,
        tool_call_parser=TOOL_CALL_PARSER,
        extra_args=list(vllm.extra_args) if vllm else [],
        adapters=list(vllm.adapters) if vllm else [], lora=vllm.lora if vllm else None))


def plan(stack: AIStack, build: Build, *, weights: Path) -> EnginePlan:
    model = stack.spec.model
    if build == "cuda" and model.provider == "vllm":
        return EnginePlan(model=model, weights=None, offline=False)
    return EnginePlan(model=offline_model_spec(model), weights=str(weights), offline=True)


def usable_engine(build: Build) -> EngineLocation:
    """The engine's interpreter, or EngineUnavailable saying why there is none."""
    engine = find_engine(build)
    if engine is None:
        raise EngineUnavailable(f"the vLLM engine is not installed: {INSTALL_HINT}")
    if not engine.python.exists():
        raise EngineUnavailable(f"the vLLM engine {engine.python} (from {engine.source}) does not exist")
    if engine.home is not None and not is_installed(engine.home, build):
        raise EngineUnavailable(f"the vLLM engine in {engine.home} is not fully installed: {INSTALL_HINT}")
    return engine


@dataclass
class LocalEngine:
    """A started engine, and what is needed to start it again."""

    server: EngineServer
    build: Build
    plan: EnginePlan
    restarts: int = 0
    index: int = 0
    """Which of `aistack up`'s engines (its log: `engine_log_name(index)`)."""

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def describe(self) -> str:
        return (f"vLLM {VLLM_VERSION} ({self.build} build), pid {self.server.process.pid}, "
                f"log {self.server.log}")


def launch(engine: EngineLocation, build: Build, chosen: EnginePlan, *, log: Path,
           port: int | None = None) -> EngineServer:
    port = port or free_port()
    command = local_command(engine, chosen.model, build=build, host="127.0.0.1", port=port,
                            weights=chosen.weights)
    env = local_environ(build, lora=chosen.model.vllm is not None and chosen.model.vllm.lora_enabled)
    if not chosen.offline:  # the spec's own model may need the hub; offline weights never do
        env.pop("HF_HUB_OFFLINE", None)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"\n==== aistack up, {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(command)}\n")
    return EngineServer(command, env=env, log=log, base_url=f"http://127.0.0.1:{port}")


async def wait_ready(server: EngineServer, *, timeout_s: float = START_TIMEOUT_S,
                     progress: Callable[[str], None] = lambda text: None) -> float:
    """Seconds until the engine answers `/health`; on exit, timeout or cancellation (Ctrl-C) it is
    stopped and EngineUnavailable (or CancelledError) raised."""
    started = time.monotonic()
    try:
        while True:
            elapsed = time.monotonic() - started
            code = server.exit_code()
            if code is not None:
                raise EngineUnavailable(f"the vLLM engine exited with code {code} while starting "
                                        f"({server.last_log_line()[:160]}): see {server.log}")
            if elapsed > timeout_s:
                raise EngineUnavailable(f"the vLLM engine did not answer /health within {timeout_s:.0f} s: "
                                        f"see {server.log}")
            if await asyncio.to_thread(server.healthy):
                return elapsed
            progress(f"{elapsed:.0f} s · {server.last_log_line()[:100]}")
            await asyncio.sleep(0.5)
    except BaseException:
        await asyncio.to_thread(server.stop, grace_s=5)
        raise
