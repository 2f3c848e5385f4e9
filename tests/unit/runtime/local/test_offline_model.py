"""The offline model really generates, offline, says so beside every answer (a header, never in the
text), and is honest about its limits:
`finish_reason` says whether it stopped or was cut off, `max_tokens` is honoured within its
context, and bad requests get OpenAI-style 400s instead of a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from aistack.runtime.local.offline_model import CONTEXT_TOKENS, OFFLINE_MODEL_NAME, OfflineModel, offline_app
from aistack.testing.gateway import Gateway, base_config, run_gateway
from aistack.testing.openai_server import serve_in_thread

pytestmark = pytest.mark.slow

NOTICE = "offline model SmolLM2-135M-Instruct, not gpt-4o-mini; answers are weak"
LONG = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
SHORT = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def model() -> OfflineModel:
    return OfflineModel()  # ~20 s: loaded once for the module


@pytest.fixture(scope="module")
def client(model: OfflineModel) -> TestClient:
    return TestClient(offline_app(model, instead_of="gpt-4o-mini"))


def chat(client: TestClient, **body: object) -> dict:
    response = client.post("/v1/chat/completions", json={"model": OFFLINE_MODEL_NAME, **body})
    assert response.status_code == 200, response.text
    return response.json()


def stream_events(client: TestClient, **body: object) -> list[dict]:
    text = client.post("/v1/chat/completions",
                       json={"model": OFFLINE_MODEL_NAME, "stream": True, **body}).text
    assert text.rstrip().endswith("data: [DONE]")
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def test_offline_model_answers_with_its_notice_in_a_header_not_the_text(client: TestClient) -> None:
    assert client.get("/v1/models").json()["data"][0]["id"] == OFFLINE_MODEL_NAME
    response = client.post("/v1/chat/completions",
                           json={"model": OFFLINE_MODEL_NAME, "max_tokens": 8, "messages": SHORT})
    assert response.headers["x-aistack-notice"] == NOTICE
    answer = response.json()
    content = answer["choices"][0]["message"]["content"]
    assert content and "answers are weak" not in content and not content.startswith("[")
    assert 0 < answer["usage"]["completion_tokens"] <= 8 and answer["model"] == OFFLINE_MODEL_NAME
    streamed = client.post("/v1/chat/completions", json={"model": OFFLINE_MODEL_NAME, "stream": True,
                                                         "max_tokens": 4, "messages": SHORT})
    assert streamed.headers["x-aistack-notice"] == NOTICE and "answers are weak" not in streamed.text


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_a_cut_off_answer_says_length_and_has_exactly_max_tokens(client: TestClient, param: str) -> None:
    answer = chat(client, messages=LONG, **{param: 3})
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 3
    final = stream_events(client, messages=LONG, **{param: 3})[-1]
    assert final["choices"][0]["finish_reason"] == "length" and final["usage"]["completion_tokens"] == 3


def test_a_finished_answer_says_stop(client: TestClient) -> None:
    answer = chat(client, messages=SHORT, max_tokens=64)
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["completion_tokens"] < 64
    final = stream_events(client, messages=SHORT, max_tokens=64)[-1]
    assert final["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_above_the_old_cap_of_96_is_honoured(client: TestClient) -> None:
    answer = chat(client, messages=LONG, max_tokens=120)
    assert answer["usage"]["completion_tokens"] > 96


@pytest.mark.parametrize(("body", "param", "fragment"), [
    ({"messages": SHORT, "max_tokens": CONTEXT_TOKENS + 1}, "max_tokens", "context is 2048 tokens"),
    ({"messages": SHORT, "max_completion_tokens": 100_000}, "max_completion_tokens", "at most 2048"),
    ({}, "messages", "messages is required"),
    ({"messages": "hello"}, "messages", "valid list"),
    ({"messages": []}, "messages", "at least 1 item"),
    ({"messages": [{"content": "no role"}]}, "messages[0].role", "required"),
    ({"messages": SHORT, "max_tokens": "8"}, "max_tokens", "valid integer"),
    ({"messages": SHORT, "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
    ({"messages": SHORT, "temperature": "hot"}, "temperature", "valid number"),
    ({"messages": SHORT, "stream": "yes"}, "stream", "valid boolean"),
])
def test_bad_requests_are_400_naming_the_parameter(client: TestClient, body: dict, param: str,
                                                   fragment: str) -> None:
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error[
        "type"] == "invalid_request_error" and error["param"] == param and fragment in error["message"]


def test_a_body_that_is_not_a_json_object_is_400(client: TestClient) -> None:
    for raw in (b"{not json", b"[1, 2]"):
        response = client.post("/v1/chat/completions", content=raw,
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and "request body" in response.json()["error"]["message"]


def test_messages_that_fill_the_context_are_400_naming_messages(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "word " * (CONTEXT_TOKENS + 10)}], "max_tokens": 4})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages" and "2048" in error["message"]


@pytest.fixture(scope="module")
def gateway_over_offline_model(client: TestClient, model: OfflineModel) -> Iterator[Gateway]:
    """The gateway as `aistack up` wires it to the offline model, with the manifest's maxTokens of 3."""
    with serve_in_thread(offline_app(model, instead_of="gpt-4o-mini")) as port:
        config = base_config(f"http://127.0.0.1:{port}/v1", model={
            "defaults": {"maxTokens": 3},
            "primary": {"timeoutSeconds": 120}})  # one request at a time, ~10 tok/s: slow when loaded
        with run_gateway(config) as gateway:
            yield gateway


def test_the_gateway_applies_the_manifests_max_tokens_to_the_offline_model(
        gateway_over_offline_model: Gateway) -> None:
    openai_client = gateway_over_offline_model.client(timeout=120)
    answer = openai_client.chat.completions.create(model="demo-model", messages=LONG)
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 3
    own = openai_client.chat.completions.create(model="demo-model", messages=LONG, max_completion_tokens=5)
    assert own.usage.completion_tokens == 5  # the request's own limit wins over the manifest's


CHOICES = ["Paris is the capital of France.", "Bananas are yellow when they are ripe.",
           "The moon orbits the earth about once a month."]


def test_structured_choice_answers_one_of_the_choices_unlabelled_and_the_likeliest(
        client: TestClient) -> None:
    for question, want in (("What is the capital of France?", CHOICES[0]),
                           ("What colour is a ripe banana?", CHOICES[1])):
        answer = chat(client, messages=[{"role": "user", "content": question}],
                      structured_outputs={"choice": CHOICES})
        choice = answer["choices"][0]
        assert choice["message"]["content"] == want  # a choice exactly, so no label in front
        assert choice["finish_reason"] == "stop" and answer["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(("structured", "param"), [
    ({"choice": []}, "structured_outputs.choice"),
    ({"choice": [""]}, "structured_outputs.choice[0]"),
    ({"json": {"type": "object"}, "choice": ["a"]}, "structured_outputs"),
    ({"regex": "a+"}, "structured_outputs"),
])
def test_structured_outputs_it_cannot_honour_are_400s(client: TestClient, structured: dict,
                                                      param: str) -> None:
    response = client.post("/v1/chat/completions", json={"model": OFFLINE_MODEL_NAME, "messages": SHORT,
                                                          "structured_outputs": structured})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(("extra", "param"), [
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
     "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"}, "tools"),
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
])
def test_what_transformers_cannot_honour_is_a_400_not_ignored(extra: dict, param: str) -> None:
    """Checked before the model is asked, so no model is loaded for it."""
    never_used = TestClient(offline_app(None))  # type: ignore[arg-type]
    response = never_used.post("/v1/chat/completions", json={"model": OFFLINE_MODEL_NAME, "messages": SHORT,
                                                              **extra})
    assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert "vLLM engine" in response.json()["error"]["message"]
