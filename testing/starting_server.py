"""A model replica that starts late, as an engine does: its port is bound at once but refuses
connections until `start()` runs the deterministic OpenAI server on it (the gateway's hold of
requests to a model at zero replicas is tested against it)."""

from __future__ import annotations

import socket
import threading

import uvicorn

from aistack.testing.openai_server import OpenAIServer, ServerOptions


class StartingReplica:
    """A replica's address (`base_url`, with `/v1`) whose server starts only when told."""

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        self.port = int(self.sock.getsockname()[1])
        self.server: uvicorn.Server | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Serve from now on (once; a second call does nothing)."""
        with self._lock:
            if self.server is not None:
                return
            config = uvicorn.Config(OpenAIServer(self.options).app, log_level="warning", access_log=False)
            self.server = uvicorn.Server(config)
        threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                         name=f"replica-{self.port}").start()

    def start_after(self, seconds: float) -> None:
        timer = threading.Timer(seconds, self.start)
        timer.daemon = True
        timer.start()

    @property
    def listening(self) -> bool:
        return self.server is not None and self.server.started

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.sock.close()

    def __enter__(self) -> StartingReplica:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
