"""The local MLflow server of `aistack up` and `aistack ui`.

It needs the full MLflow server, which the `runtime` extra (mlflow-skinny) lacks: without it,
up serves on without traces and says how to get them, instead of starting a child process
that exits at once. It takes a stable port, or a free one (said so) when that port is taken;
a stop leaves none of its processes behind, and a server orphaned by a killed owner is
stopped by the next start on the same folder, never another process that reuses its pid."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aistack.runtime.local import mlflow_server
from aistack.runtime.local.mlflow_server import PID_FILE, MlflowServer, group_members, stop_leftover
from aistack.runtime.local.ports import free_port
from aistack.runtime.local.runner import LocalStack, UpOptions

REPO = Path(__file__).resolve().parents[4]


def test_full_mlflow_server_is_installed_in_the_dev_environment() -> None:
    assert mlflow_server.missing_server_packages() == []


def test_missing_server_packages_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "flask" else real(name, *a))
    assert mlflow_server.missing_server_packages() == ["flask"]


def test_up_without_the_mlflow_server_turns_tracing_off_and_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("aistack.runtime.local.runner.missing_server_packages",
                        lambda: ["flask", "sqlalchemy"])
    stack = LocalStack(REPO / "examples" / "rag.yaml", UpOptions(state=tmp_path))
    observability = stack.stack.spec.observability
    assert observability is not None and observability.mlflow.managed is not None
    assert stack._start_mlflow() is None
    assert stack._mlflow is None
    assert stack.status.mlflow_state == "not installed"
    assert any("flask, sqlalchemy missing" in note and "aistack[local]" in note
               for note in stack.status.notes)


def _cmdlines(pids: list[int]) -> list[str]:
    lines = []
    for pid in pids:
        with contextlib.suppress(OSError):
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return lines


def test_a_taken_port_moves_mlflow_to_a_free_one_and_the_status_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        stack = LocalStack(REPO / "examples" / "rag.yaml", UpOptions(state=tmp_path, mlflow_port=busy))
        url = stack._start_mlflow()
        assert stack._mlflow is not None
        try:
            assert stack._mlflow.moved_from == busy and url == stack._mlflow.url and f":{busy}" not in url
            assert any(f"port {busy} is in use" in note and str(stack._mlflow.port) in note
                       and "--mlflow-port" in note
                       for note in stack.status.notes)
        finally:
            stack._mlflow.stop()


def test_stop_ends_every_process_of_the_server_and_no_job_runner_starts(tmp_path: Path) -> None:
    server = MlflowServer(folder=tmp_path / "mlflow", port=free_port())
    server.start()
    pgid = server.pid
    assert pgid is not None
    try:
        assert server.wait(timeout_seconds=180), (tmp_path / "mlflow" / "server.log").read_text()[-2000:]
        running = _cmdlines(group_members(pgid))
        assert any("uvicorn" in line for line in running)
        assert not any("huey" in line or "_job_runner" in line for line in running), running
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 15
    assert group_members(pgid) == []
    assert not (tmp_path / "mlflow" / PID_FILE).exists()


def test_a_server_left_by_a_killed_owner_is_stopped_by_the_next_start(tmp_path: Path) -> None:
    folder = tmp_path / "mlflow"
    port = free_port()
    orphan = MlflowServer(folder=folder, port=port)
    orphan.start()
    pgid, proc = orphan.pid, orphan._proc
    assert pgid is not None and proc is not None
    successor = MlflowServer(folder=folder, port=port)
    try:
        assert orphan.wait(timeout_seconds=180)  # it holds the port, as a real orphan does
        orphan._proc = None  # its owner is gone: nobody will stop it
        successor.start()
        assert group_members(pgid) == []
        assert successor.moved_from is None and successor.port == port  # the port was freed for it
        assert successor.wait(timeout_seconds=180)
    finally:
        successor.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait(10)


def test_a_pid_file_naming_another_process_leaves_that_process_alone(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        (tmp_path / PID_FILE).write_text(str(other.pid))
        assert stop_leftover(tmp_path) is None
        assert other.poll() is None
        assert not (tmp_path / PID_FILE).exists()
    finally:
        other.kill()
        other.wait()
