"""`aistack collection`: the collection Job's command, which holds an external Qdrant's key so
the operator never reads it. A local-mode Qdrant per URL stands in for the server (as in the
operator's tests); the unreachable case goes to a closed port on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from qdrant_client import models
from typer.testing import CliRunner

from aistack.api.commands import CollectionExit
from aistack.cli.main import app
from aistack.runtime.local.ports import free_port
from aistack.testing.cluster import QdrantPool

REPO = Path(__file__).resolve().parents[3]
KEY_ENV = "AISTACK_SECRET_QD_API_KEY"
runner = CliRunner()


def manifest(tmp_path: Path, url: str, *, key: bool = True) -> Path:
    stack = yaml.safe_load((REPO / "examples" / "rag.yaml").read_text())
    external: dict[str, Any] = {"url": url}
    if key:
        external["apiKeySecretRef"] = {"name": "qd", "key": "api-key"}
    stack["spec"]["retrieval"]["vectorStore"] = {"external": external}
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(stack))
    return path


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> tuple[QdrantPool, list[tuple[str, str | None]]]:
    servers = QdrantPool()
    calls: list[tuple[str, str | None]] = []

    def factory(url: str, api_key: str | None) -> Any:
        calls.append((url, api_key))
        return servers(url, api_key)

    monkeypatch.setattr("aistack.operator.collection.default_qdrant_factory", factory)
    return servers, calls


def run(path: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["collection", str(path)])
    return result.exit_code, result.output


def test_the_collection_is_created_with_the_key_from_the_environment(tmp_path, pool, monkeypatch) -> None:
    servers, calls = pool
    path = manifest(tmp_path, "https://qdrant.example.com:6333")
    code, out = run(path)
    assert code == CollectionExit.UNAVAILABLE and f"{KEY_ENV} is not set" in out and not calls
    monkeypatch.setenv(KEY_ENV, "s3cret")
    code, out = run(path)
    assert code == CollectionExit.READY, out
    assert calls == [("https://qdrant.example.com:6333", "s3cret")]
    assert servers.clients["https://qdrant.example.com:6333"].collection_exists("docs")
    assert servers.closes["https://qdrant.example.com:6333"] == 1
    assert run(path)[0] == CollectionExit.READY  # an existing, matching collection is left as it is


def test_a_collection_with_other_vectors_is_a_mismatch_left_untouched(tmp_path, pool, monkeypatch) -> None:
    servers, _ = pool
    monkeypatch.setenv(KEY_ENV, "s3cret")
    url = "https://qdrant.example.com:6333"
    servers(url, None).create_collection("docs", vectors_config=models.VectorParams(
        size=8, distance=models.Distance.DOT))
    code, out = run(manifest(tmp_path, url))
    assert code == CollectionExit.MISMATCH
    assert "CollectionMismatch: collection 'docs' has size 8" in " ".join(out.split())
    assert servers.clients[url].get_collection("docs").config.params.vectors.size == 8


def test_an_unreachable_qdrant_or_a_stack_without_one_is_unavailable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, "s3cret")
    code, out = run(manifest(tmp_path, f"http://127.0.0.1:{free_port()}"))
    assert code == CollectionExit.UNAVAILABLE and "Qdrant at http://127.0.0.1:" in out
    code, out = run(REPO / "examples" / "rag.yaml")
    assert code == CollectionExit.UNAVAILABLE and "has no external Qdrant" in out
