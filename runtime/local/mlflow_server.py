"""A local MLflow tracking server (sqlite + local artifacts) run as a child process.

It starts in the background: the gateway serves at once, and traces sent before MLflow is
healthy are dropped by the tracer, never waited for (observability never blocks serving).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


# Packages of the full `mlflow` server (Flask app, SQL store) that `mlflow-skinny`, the tracing
# client in the `runtime` extra and the runtime image, does not carry.
SERVER_PACKAGES = ("flask", "sqlalchemy", "alembic")
INSTALL_HINT = "pip install 'aistack[local]'"


def missing_server_packages() -> list[str]:
    """The full MLflow server's packages absent here (empty when `mlflow server` can run)."""
    return [name for name in SERVER_PACKAGES if importlib.util.find_spec(name) is None]


class MlflowServer:
    def __init__(self, *, folder: Path, port: int, host: str = "127.0.0.1") -> None:
        self.folder = folder
        self.port = port
        self.host = host
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 - owned by the child for its life
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server",
             "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
             "--artifacts-destination", str(self.folder / "artifacts"),
             "--host", self.host, "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait(self, *, timeout_seconds: float = 120) -> bool:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                return False
            if self.healthy():
                return True
            time.sleep(0.5)
        return False

    def stop(self) -> None:
        """Stop the server and its gunicorn/uvicorn workers (its own process group)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
