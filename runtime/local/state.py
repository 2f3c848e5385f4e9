"""Where a stack keeps its data on this machine, and its gateway config for local runs.

`aistack up`, `aistack ingest` and `aistack eval` agree on one state folder per stack,
`<manifest folder>/.aistack/<stack name>/` unless `--state` says otherwise: the embedded
Qdrant shard under `qdrant/`, MLflow's sqlite and artifacts under `mlflow/`, and `up.json`
while `aistack up` runs (its URLs and pid), so the other commands can find it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from aistack.api.gateway_config import Endpoints, GatewayConfig, RetrievalConfig, build_gateway_config
from aistack.api.v1alpha1 import AIStack
from aistack.runtime.local.provider_keys import with_provider_keys

STATE_DIR = ".aistack"
RUNNING_FILE = "up.json"


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
