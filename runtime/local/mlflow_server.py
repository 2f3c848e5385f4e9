"""A local MLflow tracking server (sqlite + local artifacts) run as a child process.

`aistack up` starts it while the models load and waits for it before it reports ready, so the
first traces are not dropped; `aistack ui` starts it alone to reopen a stopped stack's traces.
Both use one stable port (`DEFAULT_PORT`), so a printed link stays the same across runs; when
that port is taken the server moves to a free one and `moved_from` says so.

The server runs in its own session: a Ctrl-C at the terminal reaches only `aistack`, which
stops the server's whole process group in order, bounded (SIGTERM, then SIGKILL). Its pid is
kept in `server.pid`, so a server orphaned by a killed `aistack up` is stopped by the next
command that takes the state folder's lock.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from aistack.runtime.local.ports import free_port, port_free

# Packages of the full `mlflow` server (Flask app, SQL store) that `mlflow-skinny`, the tracing
# client in the `runtime` extra and the runtime image, does not carry.
SERVER_PACKAGES = ("flask", "sqlalchemy", "alembic")
INSTALL_HINT = "pip install 'aistack[local]'"
DEFAULT_PORT = 5050
PID_FILE = "server.pid"
STOP_SECONDS = 3.0


def missing_server_packages() -> list[str]:
    """The full MLflow server's packages absent here (empty when `mlflow server` can run)."""
    return [name for name in SERVER_PACKAGES if importlib.util.find_spec(name) is None]


class MlflowServer:
    def __init__(self, *, folder: Path, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> None:
        self.folder = folder
        self.port = port
        self.host = host
        self.moved_from: int | None = None
        """The requested port, when it was in use and the server took a free one instead."""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def database(self) -> Path:
        return self.folder / "mlflow.db"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def start(self) -> None:
        """Start in the background; the caller holds the state folder's lock (see `stop_leftover`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        stop_leftover(self.folder)
        if not port_free(self.port):
            self.moved_from, self.port = self.port, free_port()
        # The job runner (7 huey consumer processes) serves scheduled GenAI jobs that a local
        # stack does not use; without it the server starts faster and stops in about a second.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get(
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")}
        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server",
                 "--backend-store-uri", f"sqlite:///{self.database}",
                 "--artifacts-destination", str(self.folder / "artifacts"),
                 "--host", self.host, "--port", str(self.port), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env=env,
            )
        (self.folder / PID_FILE).write_text(str(self._proc.pid))

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def exit_code(self) -> int | None:
        """The server's exit code once it has exited (it failed to start, or was killed)."""
        return self._proc.poll() if self._proc is not None else None

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait(self, *, timeout_seconds: float = 120) -> bool:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.exit_code() is not None:
                return False
            if self.healthy():
                return True
            time.sleep(0.5)
        return False

    def stop(self, *, timeout_seconds: float = STOP_SECONDS) -> None:
        """Stop the server and its uvicorn worker (its own process group): SIGTERM, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        stop_group(proc.pid, timeout_seconds=timeout_seconds, reap=proc.poll)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
        with contextlib.suppress(FileNotFoundError):
            (self.folder / PID_FILE).unlink()

    def kill(self) -> None:
        """Kill the whole group at once (a second Ctrl-C); `stop` then only reaps it."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)


def stop_leftover(folder: Path) -> int | None:
    """Stop a server left running on this folder's database by a killed owner; its pid, if any.

    Only a caller holding the state folder's lock may call it: the lock proves the server's
    owner is gone. The pid is trusted only while it still leads its own process group and its
    command line names this folder's database, so a reused pid is left alone.
    """
    try:
        pid = int((folder / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        leads_group = os.getpgid(pid) == pid
    except (OSError, ProcessLookupError):
        cmdline, leads_group = "", False
    stopped = None
    if leads_group and str(folder / "mlflow.db") in cmdline:
        stop_group(pid, timeout_seconds=STOP_SECONDS)
        stopped = pid
    with contextlib.suppress(FileNotFoundError):
        (folder / PID_FILE).unlink()
    return stopped


def stop_group(pgid: int, *, timeout_seconds: float, reap: Callable[[], object] = lambda: None) -> None:
    """SIGTERM the group, wait up to `timeout_seconds` for every member to go, then SIGKILL it.

    `reap` polls the leader when it is our child, so it does not linger as a zombie.
    """
    for sig, seconds in ((signal.SIGTERM, timeout_seconds), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            reap()
            return
        except PermissionError:
            pass
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            reap()
            if not group_members(pgid):
                return
            time.sleep(0.05)


def group_members(pgid: int) -> list[int]:
    """The live processes of a process group (zombies, which are only waiting to be reaped, excluded)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel whether the group still exists at all
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, pgrp, ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members
