"""The gateway's extractive mode (what `aistack up` sets for the offline model), against the fake
upstream: the engine is asked to choose among sentences of the cited passages, the answer quotes
the chosen one with its citation, plain and streamed (the notice that it is a quotation in the
`x-aistack-notice` header, never in the text), and an engine that ignores the constraint
is an upstream error, never an unquoted answer."""

from __future__ import annotations

import openai
import pytest

from aistack.runtime.orchestration import extractive
from aistack.runtime.retrieval.contracts import Passage
from aistack.testing.gateway import HashEmbedder, ListRetriever, base_config, run_gateway

DELETED = "Files deleted from a folder keep their chunks until you run ingest with `--prune`."
PASSAGES = [Passage(text=f"Ingestion skips unchanged files by their hash. {DELETED}",
                    source="docs/ingestion.md",
                    score=0.9),
            Passage(text="The operator retains collections when an AIStack is deleted.",
                    source="docs/operator.txt",
                    score=0.5)]
QUESTION = [{"role": "user", "content": "How do I remove the chunks of deleted files?"}]


def config(upstream_url: str, **retrieval: object) -> dict:
    return base_config(upstream_url, model={"answers": "extractive"}, retrieval={
        "collection": "docs", "distance": "Cosine", "topK": 2, "maxContextTokens": 500,
        "embedder": {"provider": "local", "model": "hash-embed", "dimension": 8}, **retrieval},
        orchestration={"systemPrompt": "Cite sources as [n].",
                       "promptTemplate": "C:\n{context}\nQ: {question}"})


class KeywordEmbedder:
    """Vectors that count `prune` and `hash`: a sentence's closeness to a question is predictable."""

    model, dimension = "keyword-embed", 3

    async def embed(self, texts):
        return [[t.count("prune") + 0.0, t.count("hash") + 0.0, 0.01] for t in texts]


@pytest.fixture(scope="module")
def gw(upstream):
    """Without an embedder: the model chooses among every sentence."""
    with run_gateway(config(upstream.base_url), retriever=ListRetriever(list(PASSAGES))) as gateway:
        yield gateway


def test_the_engine_chooses_among_the_passages_sentences_and_the_answer_quotes_it(gw, upstream):
    raw = gw.client().chat.completions.with_raw_response.create(model="demo-model", messages=QUESTION)
    out = raw.parse()
    assert "quoted, not written" in raw.headers["x-aistack-notice"]
    sent = upstream.requests[-1]
    assert sent["structured_outputs"]["choice"] == [
        "Ingestion skips unchanged files by their hash.", DELETED,
        "The operator retains collections when an AIStack is deleted."]
    assert sent["messages"][0] == {"role": "system", "content": extractive.INSTRUCTION}
    assert sent["messages"][-1]["content"].endswith("Q: How do I remove the chunks of deleted files?")
    assert sent["temperature"] == 0.0
    answer = out.choices[0].message.content
    assert answer == "Ingestion skips unchanged files by their hash. [1]"  # the fake picks the first
    assert out.choices[0].finish_reason == "stop"
    assert [c["source"] for c in out.citations] == ["docs/ingestion.md", "docs/operator.txt"]


def test_a_streamed_extractive_answer_is_one_chunk_with_its_citations(gw):
    chunks = list(gw.client().chat.completions.create(model="demo-model", messages=QUESTION, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Ingestion skips unchanged files by their hash. [1]")
    assert chunks[0].citations[0]["source"] == "docs/ingestion.md"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_an_engine_that_ignores_the_choice_is_an_upstream_error(gw):
    with pytest.raises(openai.APIStatusError) as err:
        gw.client().chat.completions.create(model="demo-model", messages=[
            {"role": "user", "content": "[[say:npm run clean --prune /path/to]]"}])
    assert err.value.status_code == 502
    assert "did not give an extractive answer" in err.value.message


def test_with_an_embedder_the_model_chooses_among_the_sentences_nearest_the_question(upstream):
    with run_gateway(config(upstream.base_url), retriever=ListRetriever(list(PASSAGES)),
                     embedder=KeywordEmbedder()) as gw:
        out = gw.client().chat.completions.create(model="demo-model", messages=[
            {"role": "user", "content": "How do I prune the chunks of deleted files?"}])
    assert upstream.requests[-1]["structured_outputs"]["choice"] == [DELETED]
    assert out.choices[0].message.content.startswith(f"{DELETED} [1]")


def test_no_passage_means_no_model_call_and_says_so(upstream):
    with run_gateway(config(upstream.base_url), retriever=ListRetriever([]), embedder=HashEmbedder()) as gw:
        before = len(upstream.requests)
        out = gw.client().chat.completions.create(model="demo-model", messages=QUESTION)
    assert out.choices[0].message.content == extractive.NO_PASSAGE
    assert len(upstream.requests) == before and out.citations == []
