"""For the retrieval/ingestion/evaluation integration tests: MiniLM, loaded once per session (moto's
S3 server and MLflow are in ../conftest.py), and test stacks and documents."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from aistack.runtime.retrieval.embedders import LocalEmbedder
from aistack.testing.documents import make_pdf

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def minilm() -> LocalEmbedder:
    return LocalEmbedder(model="all-MiniLM-L6-v2")


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
