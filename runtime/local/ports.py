"""Loopback ports for the servers `aistack up` and `aistack ui` start on this machine (the one
`free_port`: the test harness, the tests, the benchmarks and examples/demo.py use it too)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port the OS has just given out (free now; a later bind can still lose a race)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether a server could bind `port` on 127.0.0.1 now (as uvicorn binds: TIME_WAIT is fine)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
