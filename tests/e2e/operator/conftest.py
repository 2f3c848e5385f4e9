"""Fixtures: one emulated API server and one operator per module; a namespace per test.

What the emulation does not cover is listed in `aistack.testing.emulator`'s docstring.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aistack.testing.cluster import Cluster, OperatorThread, QdrantPool
from aistack.testing.emulator import EmulatorThread


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    logging.getLogger("kopf").setLevel(logging.WARNING)
    with EmulatorThread() as thread:
        yield Cluster(thread)


@pytest.fixture(scope="module")
def qdrant() -> QdrantPool:
    return QdrantPool()


@pytest.fixture(scope="module")
def operator(cluster: Cluster, qdrant: QdrantPool) -> Iterator[OperatorThread]:
    with OperatorThread(cluster, qdrant) as op:
        yield op


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test, so tests sharing the operator never see each other."""
    name = request.node.name.replace("_", "-").lower()[:50].strip("-")
    cluster.add_namespace(name)
    return name


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture
def stack_doc() -> Callable[..., dict[str, Any]]:
    """An example manifest placed in a namespace: `stack_doc("rag", namespace)`."""

    def build(example: str, namespace: str, *, name: str | None = None) -> dict[str, Any]:
        data = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text(encoding="utf-8"))
        data["metadata"]["namespace"] = namespace
        if name:
            data["metadata"]["name"] = name
        return data

    return build
