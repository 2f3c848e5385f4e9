"""`aistack up` from the user's seat, as a subprocess of the real entry point: what it shows while
it starts, how Ctrl-C to its process group stops every part, how a second copy on the same state
is refused at once (and a kill -9 leaves no stale lock), and how `aistack ui` reopens the traces
it recorded. Then `make demo` (examples/demo.py): the MLflow link it prints opens; at a terminal
the stack keeps serving until Ctrl-C, elsewhere it stops and prints the exact command that
reopens the trace UI. The model is the deterministic test server (the demo runs on a copy of
rag.yaml pointing at it, `--manifest`): the model does not matter here."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from openai import OpenAI
from openai.types.chat import ChatCompletion

from aistack.runtime.local.mlflow_server import group_members
from aistack.runtime.local.ports import free_port
from aistack.testing.openai_server import run_openai_server

MODEL_KEY_ENV = "AISTACK_SECRET_OPENAI_API_KEY"
ENV = {**os.environ, MODEL_KEY_ENV: "test-key", "HF_HUB_OFFLINE": "1"}
READY_TIMEOUT_S = 180  # a cold start loads MiniLM and migrates MLflow's sqlite; slow on a busy machine
STOP_BOUND_S = 20  # generous: the old stop took up to 20 s, with tracebacks
REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "examples" / "demo.py"
EXPERIMENT = "aistack/default/docs-assistant"
pytestmark = pytest.mark.timeout(600)  # some tests start the stack twice


@pytest.fixture(scope="module")
def fake_model() -> Iterator[str]:
    with run_openai_server(models=["gpt-4o-mini"]) as server:
        yield f"http://{server.host}:{server.port}/v1"


@pytest.fixture
def manifest(stack_factory: Callable[..., Path], example_docs: Path, fake_model: str) -> Path:
    path: Path = stack_factory()
    stack = yaml.safe_load(path.read_text())
    stack["spec"]["model"]["openai"]["baseUrl"] = fake_model
    path.write_text(yaml.safe_dump(stack))
    return path


def state_of(manifest: Path) -> Path:
    return manifest.parent / ".aistack" / "docs-assistant"


@dataclass
class Command:
    """A CLI process in its own session (so its pid is its process group), output in files."""

    proc: subprocess.Popen[str]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def interrupt(self) -> None:
        """Ctrl-C at a terminal: SIGINT to the whole foreground process group."""
        os.killpg(self.pid, signal.SIGINT)


def launch(args: list[str], *, logs: Path, cwd: Path | None = None) -> Command:
    out, err = logs.with_suffix(".out"), logs.with_suffix(".err")
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(args, env=ENV, stdout=stdout, stderr=stderr, text=True, cwd=cwd,
                                start_new_session=True)
    return Command(proc, out, err)


def aistack(*args: str | Path, logs: Path) -> Command:
    return launch([sys.executable, "-m", "aistack.cli", *map(str, args)], logs=logs)


def wait_ready(up: Command, state: Path) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if up.proc.poll() is not None:
            raise AssertionError(
                f"aistack up exited with {up.proc.returncode}:\n{up.stdout()}\n{up.stderr()}")
        with contextlib.suppress(OSError, ValueError):
            info = json.loads((state / "up.json").read_text())
            if info["pid"] == up.pid:
                return info
        time.sleep(0.3)
    up.proc.kill()
    raise AssertionError(f"aistack up was not ready in {READY_TIMEOUT_S} s:\n{up.stderr()}")


def wait_for_line(command: Command, pattern: str, *, stream: str = "stdout",
                  timeout: float = READY_TIMEOUT_S) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = command.stdout() if stream == "stdout" else command.stderr()
        found = re.search(pattern, text)
        if found:
            return found.group(0)
        if command.proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} in {stream}:\n{command.stdout()}\n{command.stderr()}")


def descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = {child for child, ppid in parents.items() if ppid == parent}
        todo += list(children - found)
        found |= children
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pids: set[int]) -> set[int]:
    """The processes still running (a zombie waits only for its reaping)."""
    running = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                running.add(pid)
    return running


def left_behind(pids: set[int], pgid: int, *, timeout: float = 10) -> set[str]:
    """Processes of `pids` or of the group still running after a short grace (reaping by init)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        remaining = alive(pids) | set(group_members(pgid))
        if not remaining:
            return set()
        time.sleep(0.2)
    return {f"{pid}: {cmdline(pid)}" for pid in remaining}


def assert_stopped_quietly(command: Command, state: Path) -> None:
    """Exit 0, no traceback, and one last line saying where the data is."""
    command.proc.wait(timeout=STOP_BOUND_S)
    err = command.stderr()
    assert command.proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == f"stopped; data kept in {state}", err


def ask(port: int, question: str) -> ChatCompletion:
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
    return client.chat.completions.create(model="gpt-4o-mini",
                                          messages=[{"role": "user", "content": question}])


def traces_in(mlflow_url: str, experiment: str) -> int:
    found = httpx.get(f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name",
                      params={"experiment_name": experiment}, timeout=10).json().get("experiment")
    if found is None:  # the exporter creates it with its first trace, off the request path
        return 0
    listed = httpx.get(f"{mlflow_url}/api/2.0/mlflow/traces",
                       params={"experiment_ids": found["experiment_id"]},
                       timeout=10).json()
    return len(listed.get("traces", []))


def test_ctrl_c_stops_every_part_quietly_and_a_restart_finds_the_data(manifest: Path, tmp_path: Path) -> None:
    state, port, mlflow_port = state_of(manifest), free_port(), free_port()
    up = aistack("up", manifest, "--port", port, "--mlflow-port", mlflow_port, logs=tmp_path / "up1")
    info = wait_ready(up, state)
    assert info["mlflow_url"] == f"http://127.0.0.1:{mlflow_port}"
    assert httpx.get(f"{info['mlflow_url']}/health", timeout=5).status_code == 200  # ready means traced
    assert "docs/ingestion.md" in [c["source"]
                                   for c in ask(port, "What does --prune do?").model_extra["citations"]]

    # not a terminal: each slow stage is a plain line, and the panel is printed once
    err = up.stderr()
    for stage in (f"starting MLflow at http://127.0.0.1:{mlflow_port}", "loading the embedder",
                  "ingesting 10 files from docs", "starting the gateway"):
        assert f"{stage}" in err, err
    ingested = re.search(r"docs: (\d+) chunks", up.stdout())
    assert ingested is not None, up.stdout()
    chunks = int(ingested.group(1))
    assert chunks > 0

    children = descendants(up.pid)
    running = [cmdline(pid) for pid in children]
    assert any("mlflow server" in line for line in running) and any("spawn_main" in line for line in running)
    up.interrupt()
    assert_stopped_quietly(up, state)
    assert left_behind(children | {up.pid}, up.pid) == set()
    assert up.stdout().count("Ctrl-C to stop") == 1, up.stdout()
    assert not (state / "up.json").exists()

    again = aistack("up", manifest, "--port", port, "--mlflow-port", mlflow_port, "--no-ingest",
                    logs=tmp_path / "up2")
    wait_ready(again, state)
    try:
        assert f"docs: {chunks} chunks" in again.stdout()  # the collection survived, nothing re-ingested
        answer = ask(port, "What does --prune do?")
        assert "docs/ingestion.md" in [c["source"] for c in answer.model_extra["citations"]]
    finally:
        again.interrupt()
    assert_stopped_quietly(again, state)


@pytest.mark.parametrize("presses", [1, 2], ids=["ctrl-c", "ctrl-c-twice"])
def test_ctrl_c_while_starting_stops_at_once_and_leaves_nothing(manifest: Path, tmp_path: Path,
                                                                presses: int) -> None:
    state = state_of(manifest)
    up = aistack("up", manifest, "--port", free_port(), "--mlflow-port", free_port(), logs=tmp_path / "up")
    wait_for_line(up, "loading the embedder", stream="stderr")
    children = descendants(up.pid)
    assert any("mlflow server" in cmdline(pid) for pid in children)  # MLflow was already starting
    for _ in range(presses):
        with contextlib.suppress(ProcessLookupError):
            up.interrupt()
        time.sleep(0.3)
    assert_stopped_quietly(up, state)
    assert left_behind(children | {up.pid}, up.pid) == set()
    assert not (state / "up.json").exists()


def test_a_second_copy_is_refused_at_once_and_a_kill_9_leaves_no_stale_lock(manifest: Path,
                                                                            tmp_path: Path) -> None:
    state, port, mlflow_port = state_of(manifest), free_port(), free_port()
    up = aistack("up", manifest, "--port", port, "--mlflow-port", mlflow_port, logs=tmp_path / "up")
    info = wait_ready(up, state)
    try:
        ask(port, "What does --prune do?")  # a trace for `aistack ui` to show later
        busy = f"another `aistack up` (pid {up.pid}) is running this stack (state folder {state})"

        second = subprocess.run([sys.executable, "-m", "aistack.cli", "up", str(manifest), "--port",
                                 str(free_port())],
                                env=ENV, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert f"{busy}: stop it, or use --state for a second copy" in second.stderr
        assert "starting" not in second.stderr  # refused before anything started or loaded

        ingest = subprocess.run([sys.executable, "-m", "aistack.cli", "ingest", str(manifest)],
                                env=ENV, capture_output=True, text=True, timeout=60)
        assert ingest.returncode == 2
        assert busy in ingest.stderr and "ingest when it has stopped" in ingest.stderr
        assert "loading the embedder" not in ingest.stderr  # refused before the slow part

        ui = subprocess.run([sys.executable, "-m", "aistack.cli", "ui", str(manifest)],
                            env=ENV, capture_output=True, text=True, timeout=60)
        assert ui.returncode == 0 and info["mlflow_url"] in ui.stdout, ui.stderr  # the running link instead

        children = descendants(up.pid)
    finally:
        os.kill(up.pid, signal.SIGKILL)
        up.proc.wait()

    # the lock went with the process; its MLflow (own session) is stopped by the next owner, which
    # then gets the same port, and the trace recorded before the kill is there
    reopened = aistack("ui", manifest, "--port", mlflow_port, logs=tmp_path / "ui")
    try:
        link = wait_for_line(reopened, r"http://127\.0\.0\.1:\d+/#/experiments/\d+")
        assert left_behind(children, up.pid) == set()
        assert link.startswith(f"http://127.0.0.1:{mlflow_port}/")
        assert httpx.get(link, timeout=10).status_code == 200
        assert traces_in(f"http://127.0.0.1:{mlflow_port}", EXPERIMENT) >= 1
        ui_children = descendants(reopened.pid)

        # ui owns MLflow only: the store stays free for ingest, while a whole `up` is refused
        ingest = subprocess.run([sys.executable, "-m", "aistack.cli", "ingest", str(manifest)],
                                env=ENV, capture_output=True, text=True, timeout=180)
        assert ingest.returncode == 0, ingest.stderr
        second = subprocess.run([sys.executable, "-m", "aistack.cli", "up", str(manifest), "--port",
                                 str(free_port())],
                                env=ENV, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert (f"another `aistack ui` (pid {reopened.pid}) is serving the trace UI of this stack"
                in second.stderr)
    finally:
        reopened.interrupt()
    assert_stopped_quietly(reopened, state)
    assert left_behind(ui_children | {reopened.pid}, reopened.pid) == set()


def processes_naming(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if text in line and "pytest" not in line:
                    found.append(f"{entry.name}: {line}")
    return found


def wait_for_traces(mlflow_url: str) -> int:
    """The exporter sends a trace off the request path: give it a moment to land (longer on a
    loaded machine, where its child interpreter may still be starting)."""
    deadline = time.monotonic() + 90
    while (count := traces_in(mlflow_url, EXPERIMENT)) == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    return count


def test_demo_outside_a_terminal_stops_the_stack_and_prints_the_command_that_reopens_its_trace(
        manifest: Path, tmp_path: Path) -> None:
    mlflow_port = free_port()
    demo = subprocess.run([sys.executable, str(DEMO), "--manifest", str(manifest), "--mlflow-port",
                           str(mlflow_port)],
                          env=ENV, cwd=REPO, capture_output=True, text=True, timeout=READY_TIMEOUT_S + 60)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "\nA: " in demo.stdout and "docs/ingestion.md" in demo.stdout
    assert "The stack has stopped; reopen its UI with:" in demo.stdout
    assert processes_naming(str(state_of(manifest))) == []  # the stack and its MLflow are gone

    command = shlex.split(demo.stdout.strip().splitlines()[-1])
    assert command[-4:] == ["ui", str(manifest), "--port", str(mlflow_port)]
    ui = launch(command, logs=tmp_path / "ui", cwd=REPO)
    try:
        link = wait_for_line(ui, r"http://127\.0\.0\.1:\d+/#/experiments/\d+")
        assert link.startswith(f"http://127.0.0.1:{mlflow_port}/")
        assert httpx.get(link, timeout=10).status_code == 200
        assert traces_in(f"http://127.0.0.1:{mlflow_port}", EXPERIMENT) >= 1  # the demo's question
        children = descendants(ui.pid)
    finally:
        ui.interrupt()
    assert_stopped_quietly(ui, state_of(manifest))
    assert left_behind(children | {ui.pid}, ui.pid) == set()


class Terminal:
    """A pseudo-terminal as the demo's stdin, stdout and stderr, read in the background."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        os.close(self.slave)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every process holding the other side has exited
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def wait_for(self, pattern: str, proc: subprocess.Popen[bytes], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text)
            if found:
                return found
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} on the terminal:\n{self.text}")

    def close(self) -> None:
        self._reader.join(timeout=10)
        os.close(self.master)


def test_demo_at_a_terminal_keeps_the_stack_serving_until_ctrl_c(manifest: Path) -> None:
    terminal = Terminal()
    demo = subprocess.Popen([sys.executable, str(DEMO), "--manifest", str(manifest), "--mlflow-port",
                             str(free_port())],
                            stdin=terminal.slave, stdout=terminal.slave, stderr=terminal.slave, cwd=REPO,
                            env={**ENV, "TERM": "xterm"}, start_new_session=True)
    terminal.start()
    try:
        terminal.wait_for(r"The stack keeps running: open the link; Ctrl-C to stop\.", demo, READY_TIMEOUT_S)
        url = terminal.wait_for(r"Trace: MLflow UI at (http://127\.0\.0\.1:\d+)", demo, 1).group(1)
        time.sleep(1)
        assert demo.poll() is None  # still serving after the answer
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # the link opens
        assert wait_for_traces(url) >= 1
        children = descendants(demo.pid)
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # the terminal's Ctrl-C: the demo's foreground group
        demo.wait(timeout=STOP_BOUND_S + 10)
        terminal.close()
    assert demo.returncode == 0, terminal.text
    assert "stopped; data kept in" in terminal.text and "Traceback" not in terminal.text, terminal.text
    assert left_behind(children | {demo.pid}, demo.pid) == set()
