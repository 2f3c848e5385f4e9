"""Serving an ASGI app with uvicorn in a background thread, on loopback.

`aistack up` runs the gateway this way beside its other parts, and tests use it to stand up
real servers on free ports.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class BackgroundServer:
    """uvicorn in a daemon thread; `start()` returns once it accepts connections."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int | None = None,
                 log_level: str = "warning") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level=log_level,
                                                     lifespan="on", access_log=False))
        self._thread = threading.Thread(target=self._server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, *, timeout_seconds: float = 60.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_seconds
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the server on {self.url} stopped while starting (port taken? see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server on {self.url} did not start within {timeout_seconds:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self, *, timeout_seconds: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_seconds)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
