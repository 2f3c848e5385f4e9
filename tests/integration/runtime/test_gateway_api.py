"""The gateway's HTTP API through the official `openai` SDK, against the fake upstream."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from aistack.testing.gateway import HashEmbedder, ListRetriever, base_config, run_gateway

from aistack.runtime.retrieval.contracts import Embedder, Passage, Retriever

USER = [{"role": "user", "content": "hello gateway"}]


@pytest.fixture(scope="module")
def gw(upstream):
    retriever = ListRetriever([Passage(text="Qdrant stores vectors.", source="docs/qdrant.md", score=0.9,
                                       title="Qdrant"),
                               Passage(text="MLflow keeps traces.", source="docs/mlflow.md", score=0.5)])
    assert isinstance(retriever, Retriever) and isinstance(HashEmbedder(), Embedder)
    cfg = base_config(upstream.base_url, retrieval={
        "collection": "docs", "distance": "Cosine", "topK": 2, "maxContextTokens": 500,
        "embedder": {"provider": "local", "model": "hash-embed", "dimension": 8}},
        orchestration={"systemPrompt": "Answer from context.",
                       "promptTemplate": "C:\n{context}\nQ: {question}"})
    with run_gateway(cfg, retriever=retriever, embedder=HashEmbedder()) as gateway:
        gateway.retriever = retriever
        yield gateway


def test_chat_completion_with_prompt_template_and_citations(gw, upstream):
    out = gw.client().chat.completions.create(model="demo-model", messages=USER)
    sent = upstream.requests[-1]
    assert sent["model"] == "test-model"
    assert sent["messages"][0] == {"role": "system", "content": "Answer from context."}
    assert sent["messages"][-1]["content"].startswith("C:\n[1] (Qdrant) Qdrant stores vectors.")
    assert sent["messages"][-1]["content"].endswith("Q: hello gateway")
    assert out.model == "demo-model"
    assert out.choices[0].message.content.startswith("Echo: C:")
    assert [c["source"] for c in out.citations] == ["docs/qdrant.md", "docs/mlflow.md"]
    assert gw.retriever.calls[-1] == ("hello gateway", None, 2)


def test_streaming_passthrough_with_done_and_citations_in_first_chunk(gw):
    msgs = [{"role": "user", "content": "[[say:alpha beta gamma]]"}]
    chunks = list(gw.client().chat.completions.create(model="demo-model", messages=msgs, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "alpha beta gamma"
    assert chunks[0].citations[0]["index"] == 1
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.model == "demo-model" for c in chunks)


def test_stream_usage_only_when_asked(gw):
    msgs = [{"role": "user", "content": "[[say:a b]]"}]
    plain = list(gw.client().chat.completions.create(model="demo-model", messages=msgs, stream=True))
    assert all(c.usage is None for c in plain)
    with_usage = list(gw.client().chat.completions.create(model="demo-model", messages=msgs, stream=True,
                                                          stream_options={"include_usage": True}))
    assert with_usage[-1].usage.completion_tokens == 2


def test_raw_sse_ends_with_done(gw):
    body = {"model": "demo-model", "stream": True, "messages": USER}
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"


def test_models_lists_chat_and_embedding_models(gw):
    assert sorted(m.id for m in gw.client().models.list()) == ["demo-model", "hash-embed"]


def test_embeddings_go_to_the_embedder(gw):
    out = gw.client().embeddings.create(model="hash-embed", input=["x", "y"])
    assert len(out.data) == 2 and len(out.data[0].embedding) == 8
    with pytest.raises(openai.NotFoundError):
        gw.client().embeddings.create(model="other", input="x")


def test_unknown_model_is_404_model_not_found(gw):
    with pytest.raises(openai.NotFoundError) as err:
        gw.client().chat.completions.create(model="gpt-nope", messages=USER)
    assert err.value.code == "model_not_found"
    assert "demo-model" in err.value.message


@pytest.mark.parametrize(("body", "fragment"), [
    (b"{not json", "not valid JSON"),
    (b"", "empty"),
    (b"[]", "invalid"),
    (json.dumps({"model": "demo-model", "messages": [{"role": "wizard", "content": "x"}]}).encode(),
     "messages.0.role"),
    (json.dumps({"model": "demo-model", "messages": []}).encode(), "messages"),
    (json.dumps({"model": "demo-model", "messages": USER, "n": 0}).encode(), "invalid n"),
    (json.dumps({"model": "demo-model", "messages": USER, "n": 129}).encode(), "invalid n"),
    (json.dumps({"model": "demo-model", "messages": USER, "temperature": 9}).encode(), "temperature"),
    (json.dumps({"model": "demo-model", "messages": USER, "frobnicate": True}).encode(),
     "Unrecognized request argument supplied: frobnicate"),  # the upstream's own error, passed on
    (json.dumps({"model": "demo-model", "messages": USER, "chat_template": "{{ 1 }}"}).encode(),
     "unsupported parameter 'chat_template'"),
    (json.dumps({"model": "demo-model", "messages": [{"role": "system", "content": "x"}]}).encode(),
     "'user' message"),
    (json.dumps({"model": "demo-model", "messages": [{"role": "tool", "content": "x"}]}).encode(),
     "tool_call_id"),
])
def test_bad_requests_get_openai_400(gw, body, fragment):
    resp = httpx.post(f"{gw.url}/v1/chat/completions", content=body,
                      headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]


@pytest.mark.parametrize(("extra", "param", "message"), [
    ({"stream": "yes"}, "stream", "invalid type for 'stream': expected a boolean, but got a string instead"),
    ({"max_tokens": "12"}, "max_tokens",
     "invalid type for 'max_tokens': expected an integer, but got a string instead"),
    ({"temperature": "0.5"}, "temperature", "expected a number, but got a string"),
    ({"stop": 5}, "stop", "expected a string or an array, but got an integer"),
    ({"messages": [{"role": "user", "content": 7}]}, "messages.0.content", "expected a string or an array"),
])
def test_wrong_types_are_refused_not_coerced(gw, upstream, extra, param, message):
    sent = len(upstream.requests)
    resp = httpx.post(f"{gw.url}/v1/chat/completions",
                      json={"model": "demo-model", "messages": USER, **extra})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["param"], error["code"]) == (param, "invalid_type") and message in error["message"]
    assert len(upstream.requests) == sent


def test_an_image_in_the_templated_question_is_refused_naming_the_part(gw, upstream):
    sent = len(upstream.requests)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    resp = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "demo-model", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what is this?"}, image]}]})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["param"], error["code"]) == ("messages.0.content.1.type", "unsupported_content")
    assert "'image_url'" in error["message"] and "prompt template" in error["message"]
    assert len(upstream.requests) == sent


@pytest.mark.parametrize(("part", "param"), [({"text": "no type"}, "messages.0.content.0.type"),
                                              ({"type": "text", "text": 3}, "messages.0.content.0.text")])
def test_malformed_content_parts_are_refused(gw, part, param):
    resp = httpx.post(f"{gw.url}/v1/chat/completions",
                      json={"model": "demo-model", "messages": [{"role": "user", "content": [part]}]})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == param


def test_an_image_passes_through_to_a_stack_without_a_template(upstream):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with run_gateway(base_config(upstream.base_url)) as plain:
        resp = httpx.post(f"{plain.url}/v1/chat/completions", json={"model": "demo-model", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what is this?"}, image]}]})
    assert resp.status_code == 200, resp.text
    sent = upstream.requests[-1]["messages"][-1]["content"]
    assert sent == [{"type": "text", "text": "what is this?"}, image]


def test_integers_past_64_bits_are_forwarded_not_a_500(gw, upstream):
    # the hot path encodes with orjson, which refuses such integers; pydantic accepts them
    body = {"model": "demo-model", "messages": USER, "seed": 2**70}
    resp = httpx.post(f"{gw.url}/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    assert upstream.requests[-1]["seed"] == 2**70


def test_oversized_body_is_413_with_and_without_content_length(gw):
    big = json.dumps({"model": "demo-model",
                      "messages": [{"role": "user", "content": "x" * 2_000_000}]}).encode()
    resp = httpx.post(f"{gw.url}/v1/chat/completions", content=big)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"

    def chunks():
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
    resp = httpx.post(f"{gw.url}/v1/chat/completions", content=chunks())
    assert resp.status_code == 413 and "larger than" in resp.json()["error"]["message"]


def test_unknown_path_and_method_are_openai_errors(gw):
    resp = httpx.get(f"{gw.url}/v1/nope")
    assert resp.status_code == 404 and "unknown path" in resp.json()["error"]["message"]
    resp = httpx.get(f"{gw.url}/v1/chat/completions")
    assert resp.status_code == 405 and resp.json()["error"]["type"] == "invalid_request_error"


def test_health_ready_and_metrics(gw):
    assert httpx.get(f"{gw.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gw.url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"model": True, "retrieval": True}
    gw.client().chat.completions.create(model="demo-model", messages=USER)
    text = gw.metrics()
    assert 'aistack_gateway_requests_total{route="/v1/chat/completions",status="200"}' in text
    assert 'aistack_gateway_step_seconds_count{step="retrieval"}' in text
    assert 'aistack_gateway_config_info{config_hash="0123456789abcdef",name="demo",stage="dev"} 1.0' in text


def test_readyz_is_503_when_the_retriever_is_down(gw):
    gw.retriever.fail = True
    try:
        resp = httpx.get(f"{gw.url}/readyz")
        assert resp.status_code == 503 and resp.json()["checks"]["retrieval"] is False
        with pytest.raises(openai.InternalServerError) as err:
            gw.client().chat.completions.create(model="demo-model", messages=USER)
        assert err.value.status_code == 503 and err.value.code == "retrieval_unavailable"
    finally:
        gw.retriever.fail = False
