"""The trace exporter process ignores Ctrl-C: a terminal's SIGINT reaches the whole process
group, and the exporter must neither die mid-export nor print a KeyboardInterrupt traceback;
the gateway that owns it stops it in order (`Tracer.close`), bounded and reaped. A gateway
killed outright (kill -9) leaves no exporter behind either."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aistack.api.gateway_config import TracingConfig
from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.local.ports import free_port
from aistack.runtime.tracing import Tracer


def test_exporter_ignores_sigint_from_its_start_and_closes_cleanly(capfd: pytest.CaptureFixture[str]) -> None:
    config = TracingConfig(tracking_uri=f"http://127.0.0.1:{free_port()}", experiment="x")
    tracer = Tracer(config=config, tags={}, metrics=GatewayMetrics())
    process = tracer._process
    assert process is not None and process.pid is not None
    os.kill(process.pid, signal.SIGINT)  # while the child interpreter is still starting
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.is_alive() and not _ignores_sigint(process.pid):
        time.sleep(0.1)  # until export_loop runs: it then ignores SIGINT for good
    os.kill(process.pid, signal.SIGINT)  # and once it waits on the queue
    time.sleep(1.0)
    assert process.is_alive(), "the exporter died of SIGINT"

    started = time.monotonic()
    tracer.close(timeout_s=10)  # the default 3 s can pass before a loaded machine runs the child
    assert time.monotonic() - started < 40  # bounded: the old close could wait on a full queue
    assert process.exitcode == 0  # it left on the queue's sentinel, not by a signal
    assert "KeyboardInterrupt" not in capfd.readouterr().err


def _ignores_sigint(pid: int) -> bool:
    """The kernel's view of the process: SigIgn is the mask of ignored signals."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    ignored = next(int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigIgn:"))
    return bool(ignored & (1 << (signal.SIGINT - 1)))


GATEWAY = """
import sys, time
from aistack.api.gateway_config import TracingConfig
from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.tracing import Tracer

tracer = Tracer(config=TracingConfig(tracking_uri=sys.argv[1], experiment="x"), tags={},
                metrics=GatewayMetrics())
print(tracer._process.pid, flush=True)
time.sleep(600)
"""


def test_exporter_does_not_outlive_a_killed_gateway() -> None:
    gateway = subprocess.Popen([sys.executable, "-c", GATEWAY, f"http://127.0.0.1:{free_port()}"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert gateway.stdout is not None
        exporter = int(gateway.stdout.readline())
    finally:
        gateway.kill()  # as kill -9 does: no Tracer.close, no sentinel on the queue
        gateway.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(exporter):
        time.sleep(0.2)
    assert not _alive(exporter), "the exporter outlived its gateway"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
