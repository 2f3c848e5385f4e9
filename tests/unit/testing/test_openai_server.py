"""The fake upstream behaves as documented: other tests and benchmarks rely on it."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from aistack.testing.openai_server import hash_embedding, run_openai_server


@pytest.fixture(scope="module")
def upstream():
    with run_openai_server(hang_seconds=2.0) as server:
        yield server


@pytest.fixture
def client(upstream):
    upstream.configure(fail_next=[], latency_s=0.0)
    with openai.OpenAI(base_url=upstream.base_url, api_key="x", max_retries=0, timeout=5) as c:
        yield c


def test_echo_and_usage(client):
    out = client.chat.completions.create(model="test-model",
                                         messages=[{"role": "user", "content": "hello there"}])
    assert out.choices[0].message.content == "Echo: hello there"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage.completion_tokens == 3


def test_scripted_answer_streams_word_by_word(client):
    stream = client.chat.completions.create(model="test-model", stream=True,
                                            messages=[{"role": "user", "content": "[[say:one two three]]"}])
    parts = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert parts == ["one", " two", " three"]


def test_judge_prompt_answers_yes_only_for_unsafe(client):
    ask = "Should the user message be blocked (Yes or No)?\nUser message: {}"
    yes = client.chat.completions.create(model="test-model",
                                         messages=[{"role": "user", "content": ask.format("UNSAFE")}])
    no = client.chat.completions.create(model="test-model",
                                        messages=[{"role": "user", "content": ask.format("hi")}])
    assert (yes.choices[0].message.content, no.choices[0].message.content) == ("Yes", "No")


def test_tool_call_then_answer_from_tool_result(client):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    msgs = [{"role": "user", "content": '[[tool:lookup {"id": 7}]]'}]
    first = client.chat.completions.create(model="test-model", messages=msgs, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, json.loads(call.function.arguments)) == ("lookup", {"id": 7})
    msgs += [first.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": "found"}]
    second = client.chat.completions.create(model="test-model", messages=msgs, tools=tools)
    assert second.choices[0].message.content == "Tool lookup said: found"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])


def test_failures_injected_by_marker_and_by_queue(client, upstream):
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="test-model",
                                       messages=[{"role": "user", "content": "[[fail:500]]"}])
    upstream.configure(fail_next=["429"])
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "ok"}])
    assert client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "ok"}])


def test_reset_mid_stream_breaks_the_connection(upstream):
    body = {"model": "test-model", "stream": True,
            "messages": [{"role": "user", "content": "[[fail:reset]] a b c d"}]}
    with httpx.Client(timeout=5) as http, pytest.raises(httpx.RemoteProtocolError):
        with http.stream("POST", f"{upstream.base_url}/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            for _ in resp.iter_lines():
                pass


def test_timeout_hangs(upstream):
    body = {"model": "test-model", "messages": [{"role": "user", "content": "[[fail:timeout]]"}]}
    with httpx.Client(timeout=0.3) as http, pytest.raises(httpx.ReadTimeout):
        http.post(f"{upstream.base_url}/chat/completions", json=body)


def test_embeddings_are_deterministic_unit_vectors(client):
    out = client.embeddings.create(model="test-model", input=["a", "b", "a"])
    vecs = [d.embedding for d in out.data]
    assert vecs[0] == vecs[2] != vecs[1]
    assert vecs[0] == pytest.approx(hash_embedding("a", 16))
    assert sum(v * v for v in vecs[1]) == pytest.approx(1.0)


def test_models_and_request_log(client, upstream):
    assert [m.id for m in client.models.list()] == ["test-model"]
    client.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "logged"}])
    assert upstream.requests[-1]["messages"][-1]["content"] == "logged"
