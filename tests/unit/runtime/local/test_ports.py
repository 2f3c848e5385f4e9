"""runtime/local/ports.py: the one `free_port` (aistack up, the harness, tests, bench and the demo
all take theirs from it) and `port_free`."""

from __future__ import annotations

import ast
import socket
import subprocess
from pathlib import Path

from aistack.runtime.local.ports import free_port, port_free

ROOT = Path(__file__).resolve().parents[4]


def test_free_port_gives_a_loopback_port_that_can_be_bound() -> None:
    port = free_port()
    assert 1024 <= port <= 65535 and port_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not port_free(port)


def test_no_other_module_defines_a_free_port() -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    copies = [f"{file}:{node.lineno}" for file in files if (ROOT / file).is_file()
              for node in ast.walk(ast.parse((ROOT / file).read_text(encoding="utf-8")))
              if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
              and node.name.lstrip("_") == "free_port" and file != "runtime/local/ports.py"]
    # The container tests' fixture of that name hands out ports.free_port itself.
    assert copies == ["tests/containers/conftest.py:" + str(_fixture_line())], copies


def _fixture_line() -> int:
    tree = ast.parse((ROOT / "tests" / "containers" / "conftest.py").read_text(encoding="utf-8"))
    [node] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "free_port"]
    [returned] = [n for n in ast.walk(node) if isinstance(n, ast.Return)]
    assert ast.unparse(returned.value) == "ports.free_port"
    return node.lineno
