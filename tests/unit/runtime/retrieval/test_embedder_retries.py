"""The remote embedder tries a batch again when another try can fix it (a 503 must not fail a
whole ingestion), and not when it cannot."""

from __future__ import annotations

import pytest

from aistack.runtime.core.retry import Backoff
from aistack.runtime.local.ports import free_port
from aistack.runtime.retrieval.embedders import EmbeddingError, OpenAIEmbedder
from aistack.testing.openai_server import run_openai_server


@pytest.fixture(scope="module")
def server():
    with run_openai_server(embedding_dim=8) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(server):
    server.configure(fail_next=[], retry_after=None)


def embedder(url: str, **kw) -> OpenAIEmbedder:
    return OpenAIEmbedder(model="e", base_url=url, dimension=8, backoff=Backoff(base_s=0.01, cap_s=1.0),
                          batch_size=2, **kw)


async def test_503_429_and_502_are_retried_and_the_batch_succeeds(server):
    server.configure(fail_next=["503", "429", "502"])
    vectors = await embedder(server.base_url).embed(["a", "b", "c"])
    assert len(vectors) == 3 and server.server.options.fail_next == []


async def test_retry_after_longer_than_the_cap_is_not_waited_for(server):
    server.configure(fail_next=["503"], retry_after="60")
    with pytest.raises(EmbeddingError, match="answered 503"):
        await embedder(server.base_url).embed(["a"])


@pytest.mark.parametrize("status", ["401", "404", "500"])
async def test_what_would_fail_again_is_not_retried(server, status):
    server.configure(fail_next=[status, "503"])
    with pytest.raises(EmbeddingError, match=f"answered {status}"):
        await embedder(server.base_url).embed(["a"])
    assert server.server.options.fail_next == ["503"]


async def test_persistent_failure_stops_after_the_retries(server):
    server.configure(fail_next=["503"] * 3)
    with pytest.raises(EmbeddingError, match="answered 503"):
        await embedder(server.base_url, retries=2).embed(["a"])
    assert server.server.options.fail_next == []


async def test_a_refused_connection_is_retried_then_reported():
    with pytest.raises(EmbeddingError, match="after 3 tries"):
        await embedder(f"http://127.0.0.1:{free_port()}/v1", retries=2).embed(["a"])
