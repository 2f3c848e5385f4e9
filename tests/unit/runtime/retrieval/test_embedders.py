from __future__ import annotations

import math

import pytest

from aistack.api.gateway_config import EmbedderConfig
from aistack.runtime.retrieval.contracts import Embedder
from aistack.runtime.retrieval.embedders import (
    EmbeddingError,
    LocalEmbedder,
    OpenAIEmbedder,
    build_embedder,
    resolve_local_model,
)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y
               for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


async def test_local_minilm_gives_normalised_384d_vectors_that_rank_by_meaning(minilm: LocalEmbedder) -> None:
    assert isinstance(minilm, Embedder)
    q, near, far = await minilm.embed(["How do I ingest documents?", "Ingesting files into the collection",
                                        "The cat sat on the mat"])
    assert minilm.dimension == 384 and len(q) == 384
    assert math.isclose(sum(x * x for x in q), 1.0, rel_tol=1e-4)
    assert cosine(q, near) > cosine(q, far) + 0.2
    assert await minilm.embed([]) == []


def test_both_spec_names_map_to_the_shipped_model() -> None:
    assert resolve_local_model(
        "all-MiniLM-L6-v2") == resolve_local_model("sentence-transformers/all-MiniLM-L6-v2")
    assert (resolve_local_model("all-MiniLM-L6-v2") / "modules.json").is_file()


def test_other_local_models_fail_clearly_offline() -> None:
    with pytest.raises(EmbeddingError, match="not available offline.*provider: openai"):
        resolve_local_model("BAAI/bge-small-en-v1.5")


def test_local_embedder_refuses_a_wrong_declared_dimension(minilm: LocalEmbedder) -> None:
    with pytest.raises(EmbeddingError, match="384-d vectors but the spec says dimension 768"):
        LocalEmbedder(model="all-MiniLM-L6-v2", dimension=768)


async def test_remote_embedder_batches_and_keeps_order(embeddings_server: dict,
                                                       minilm: LocalEmbedder) -> None:
    state = embeddings_server["state"]
    state.update(mode="ok", calls=[], auth=[])
    embedder = build_embedder(
        EmbedderConfig(provider="openai", model="minilm", dimension=384, base_url=embeddings_server["url"],
                       api_key_env="EMB_KEY", batch_size=4),
        env={"EMB_KEY": "s3cret"},
    )
    assert isinstance(embedder, OpenAIEmbedder) and isinstance(embedder, Embedder)
    texts = [f"sentence number {i} about vector search" for i in range(10)]
    remote = await embedder.embed(texts)
    local = await minilm.embed(texts)
    assert state["calls"] == [4, 4, 2]
    assert state["auth"] == ["Bearer s3cret"] * 3
    assert all(cosine(r, loc) > 0.999 for r, loc in zip(remote, local, strict=True))
    await embedder.aclose()


async def test_remote_embedder_reports_server_errors_and_wrong_sizes(embeddings_server: dict) -> None:
    state = embeddings_server["state"]
    embedder = OpenAIEmbedder(model="minilm", base_url=embeddings_server["url"], dimension=384)
    state["mode"] = "error"
    with pytest.raises(EmbeddingError, match="answered 503"):
        await embedder.embed(["x"])
    state["mode"] = "short"
    with pytest.raises(EmbeddingError, match="returns 100-d vectors, the spec says 384"):
        await embedder.embed(["x"])
    state["mode"] = "ok"
    await embedder.aclose()


async def test_remote_embedder_unreachable_says_so() -> None:
    embedder = OpenAIEmbedder(model="m", base_url="http://127.0.0.1:9/v1", dimension=3, timeout_seconds=2)
    with pytest.raises(EmbeddingError, match="unreachable"):
        await embedder.embed(["x"])


def test_missing_api_key_env_is_named() -> None:
    config = EmbedderConfig(provider="openai", model="m", dimension=3, base_url="http://127.0.0.1:9/v1",
                            api_key_env="AISTACK_SECRET_EMB_KEY")
    with pytest.raises(EmbeddingError, match=r"\$AISTACK_SECRET_EMB_KEY, which is not set"):
        build_embedder(config, env={})


def test_a_remote_embedder_chunks_within_its_declared_limit_or_512() -> None:
    def remote(**extra):
        return build_embedder(EmbedderConfig(provider="openai", model="m", dimension=3,
                                             base_url="http://127.0.0.1:9/v1", **extra))
    assert remote(max_input_tokens=128).token_meter.limit == 126  # less [CLS] and [SEP]
    assert remote().token_meter.limit == 510
    assert remote().token_meter.unit == "estimated tokens"


def test_the_local_model_counts_its_own_word_pieces(minilm) -> None:
    meter = minilm.token_meter
    assert meter.limit == 254 and meter.unit == "word-pieces of all-MiniLM-L6-v2"
    text = "Qdrant keeps the vectors."
    assert meter.count(text) == len(minilm._model.tokenizer.tokenize(text))
