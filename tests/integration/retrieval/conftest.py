"""Real servers for the retrieval/ingestion/evaluation integration tests: MiniLM (loaded once) and
moto's S3 server on loopback, each started once per session (MLflow's is in ../conftest.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aistack.runtime.local.ports import free_port
from aistack.runtime.retrieval.embedders import LocalEmbedder
from aistack.testing.documents import make_pdf

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def minilm() -> LocalEmbedder:
    return LocalEmbedder(model="all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    return s3_endpoint


def write_stack(folder: Path, *, tenant_field: str | None = None, extra: dict | None = None,
                name: str = "docs-assistant") -> Path:
    """A copy of examples/rag.yaml in `folder`, adjusted for the test."""
    stack = yaml.safe_load((REPO / "examples" / "rag.yaml").read_text())
    stack["metadata"]["name"] = name
    if tenant_field:
        stack["spec"]["retrieval"]["tenantField"] = tenant_field
    stack["spec"]["retrieval"]["chunking"] = {"size": 400, "overlap": 60}
    for key, value in (extra or {}).items():
        stack["spec"][key] = value
    path = folder / "stack.yaml"
    path.write_text(yaml.safe_dump(stack))
    return path


@pytest.fixture
def stack_factory(tmp_path: Path) -> Callable[..., Path]:
    """`write_stack` into the test's folder; takes write_stack's keyword arguments."""
    def make(**kw: Any) -> Path:
        return write_stack(tmp_path, **kw)

    return make


@pytest.fixture
def example_docs(tmp_path: Path) -> Path:
    target = tmp_path / "docs"
    shutil.copytree(REPO / "examples" / "docs", target)
    return target

@pytest.fixture
def pdf_bytes() -> bytes:
    return make_pdf(["Qdrant keeps the vectors.", "MLflow keeps the runs."], title="Stack guide")


os.environ.setdefault("HF_HUB_OFFLINE", "1")
