"""Where a stack keeps its data on this machine, and its gateway config for local runs.

`aistack up`, `aistack ingest` and `aistack eval` agree on one state folder per stack,
`<manifest folder>/.aistack/<stack name>/` unless `--state` says otherwise: the embedded
Qdrant shard under `qdrant/`, MLflow's sqlite and artifacts under `mlflow/`, and `up.json`
while `aistack up` runs (its URLs and pid), so the other commands can find it.

A command that owns part of the folder for its life (`up`, `ui`, an embedded `ingest`) locks
it first, before anything slow, so a second one fails in a second naming who holds it instead
of after loading models.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from aistack.api.gateway_config import Endpoints, GatewayConfig, RetrievalConfig, build_gateway_config
from aistack.api.v1alpha1 import AIStack
from aistack.runtime.local.provider_keys import with_provider_keys

STATE_DIR = ".aistack"
RUNNING_FILE = "up.json"
ACTIVITY = {"aistack up": "running", "aistack ui": "serving the trace UI of",
            "aistack ingest": "ingesting into"}
PARTS = {"aistack up": ("store", "mlflow"), "aistack ingest": ("store",), "aistack ui": ("mlflow",)}
"""The parts of the state folder each command owns for its life (see `StateLock`)."""


def state_dir(manifest: Path, stack: AIStack, override: Path | None = None) -> Path:
    return (override or manifest.resolve().parent / STATE_DIR / stack.name).resolve()


def qdrant_path(state: Path) -> Path:
    return state / "qdrant"


def local_gateway_config(stack: AIStack, *, state: Path, model_base_url: str | None = None,
                         tracking_uri: str | None = None, qdrant_url: str | None = None) -> GatewayConfig:
    """The gateway config of `stack` wired to this machine: embedded Qdrant, in-process rails, and a
    hosted model's key from the provider's own variable when the secret's is unset (`provider_keys`)."""
    return with_provider_keys(build_gateway_config(stack, Endpoints(
        model_base_url=model_base_url or "http://127.0.0.1:8000/v1",
        qdrant_url=qdrant_url,
        qdrant_path=None if qdrant_url else str(qdrant_path(state)),
        tracking_uri=tracking_uri or "http://127.0.0.1:5000",
        guardrails_engine="inprocess",
    )), environ=os.environ)


def local_retrieval_config(stack: AIStack, *, state: Path, qdrant_url: str | None = None) -> RetrievalConfig:
    config = local_gateway_config(stack, state=state, qdrant_url=qdrant_url).retrieval
    if config is None:
        raise ValueError(f"stack {stack.name!r} has no retrieval layer: add spec.retrieval to the manifest")
    return config


@dataclass(frozen=True)
class RunningStack:
    """What a running `aistack up` publishes in its state folder."""

    pid: int
    gateway_url: str
    mlflow_url: str | None
    model: str
    offline_model: bool

    def write(self, state: Path) -> None:
        state.mkdir(parents=True, exist_ok=True)
        path = state / RUNNING_FILE
        path.write_text(json.dumps(asdict(self), indent=2))


def running_stack(state: Path) -> RunningStack | None:
    """The `aistack up` serving this state folder, if its process is still alive."""
    path = state / RUNNING_FILE
    try:
        info = RunningStack(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return info


class StateBusy(RuntimeError):
    """Another command holds the state folder; the message names it, its pid and what to do."""

    def __init__(self, *, folder: Path, pid: int | None, command: str) -> None:
        self.folder, self.pid, self.command = folder, pid, command
        who = f"`{command}` (pid {pid})" if pid is not None else f"`{command}`"
        self.holder = f"another {who} is {ACTIVITY.get(command, 'using')} this stack (state folder {folder})"
        """Who holds the folder, for a caller that gives its own advice."""
        super().__init__(f"{self.holder}: stop it, or use --state for a second copy")


class StateLock:
    """Exclusive `flock`s on the parts of the state folder a command owns, each holding the
    owner's pid and command: `store.lock` (the embedded Qdrant shard) and `mlflow.lock` (the
    MLflow server on its database). `up` owns both, `ingest` the store, `ui` MLflow, so `ui`
    and `ingest` can run side by side while either refuses a running `up`.

    The kernel drops a flock with the last descriptor of its open file, so the lock dies with
    the process however it ends (kill -9 included): there is no stale lock to clean up. The
    descriptors are not inherited by child processes (PEP 446), so a surviving child cannot
    keep them either.
    """

    def __init__(self, folder: Path, *, command: str) -> None:
        self.folder = folder
        self.command = command
        self.parts = PARTS[command]
        self._fds: list[int] = []

    def acquire(self) -> StateLock:
        """Take every part at once or raise `StateBusy` naming the holder; never waits."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for part in self.parts:
            fd = os.open(self.folder / f"{part}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self.release()
                pid, command = lock_holder(self.folder, part)
                raise StateBusy(folder=self.folder, pid=pid, command=command or "aistack up") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": self.command}).encode(), 0)
            self._fds.append(fd)
        return self

    def release(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    @property
    def held(self) -> bool:
        return bool(self._fds)

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_holder(folder: Path, part: str) -> tuple[int | None, str | None]:
    """(pid, command) written by the holder of a part's lock; (None, None) when unreadable.

    The holder writes them just after it takes the lock, so an empty file is read again briefly.
    """
    for _ in range(20):
        try:
            data = json.loads((folder / f"{part}.lock").read_text() or "null")
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            pid, command = data.get("pid"), data.get("command")
            return (pid if isinstance(pid, int) else None), (command if isinstance(command, str) else None)
        time.sleep(0.05)
    return None, None
