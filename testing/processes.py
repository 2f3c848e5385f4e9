"""Servers the benchmarks start as processes (bench/engine.py, routing.py, gateway.py): each in its
own process group, so stopping it ends what it started too, waited for until it answers on
loopback; and the load average printed beside each measurement."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from aistack.runtime.local.ports import free_port


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """End the server and whatever it started: SIGTERM to its process group, then SIGKILL to what is
    left of the group once the leader has exited or after 20 s (mlflow's huey consumers ignore
    SIGTERM; a vLLM API server's EngineCore can outlive it)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass


def start_server(command: Sequence[str], *, port: int, log: Path, name: str, probe: str = "/healthz",
                 any_answer: bool = False, timeout_s: float = 120) -> tuple[subprocess.Popen[bytes], str]:
    """Start `command` (listening on `port`) with its output in `log`, and return it with its URL
    once `probe` answers 200 (with `any_answer`, any HTTP answer: it listens). A server that exits
    or does not answer in time is stopped and named in the error, with its log."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the {name} exited with code {proc.returncode}: see {log}")
        try:
            if httpx.get(f"{url}{probe}", timeout=1).status_code == 200 or any_answer:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_process(proc)
    raise RuntimeError(f"the {name} did not answer {probe} within {timeout_s:.0f} s: see {log}")


def start_gateway(config: dict[str, Any], folder: Path, *, name: str = "gateway",
                  prefix: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """The gateway as the pod runs it, with `config` (written to `folder/<name>.yaml`, its log
    beside it); `prefix` (e.g. `taskset -c 0`) goes before its command."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    command = [*prefix, sys.executable, "-m", "aistack.runtime", "--host", "127.0.0.1", "--port", str(port),
               "--config", str(path)]
    return start_server(command, port=port, log=folder / f"{name}.log", name=name)


def wait_alive_until(predicate: Any, proc: subprocess.Popen[str], *, timeout_s: float, what: str,
                     poll_s: float = 0.3) -> None:
    """Wait for `predicate()` while `proc` (a started `aistack up`, say, its stdout piped) runs;
    if it exits or `timeout_s` passes first, kill it and fail with `what` and all it printed."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{what}:\n{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(poll_s)
