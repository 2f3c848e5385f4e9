"""The streaming load client the engine benchmark and the GPU check measure with: what it counts as
the first token, where its token counts come from, that it keeps `concurrency` requests in flight,
and that every kind of failed request is an error with its reason, left out of the numbers."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from aistack.testing.chat_load import LoadResult, StreamResult, merge, percentile, run_load, stream_chat
from aistack.testing.openai_server import RunningServer, run_openai_server, serve_in_thread


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningServer]:
    with run_openai_server() as server:
        yield server


@pytest.fixture
def url(upstream: RunningServer) -> str:
    upstream.configure(fail_next=[], latency_s=0.0, chunk_delay_s=0.0)
    return f"{upstream.base_url}/chat/completions"


def body(content: str, **extra: object) -> dict[str, object]:
    return {"model": "test-model", "messages": [{"role": "user", "content": content}], **extra}


def one(url: str, payload: dict[str, object]) -> StreamResult:
    async def go() -> StreamResult:
        async with httpx.AsyncClient(timeout=10) as client:
            return await stream_chat(client, url, payload)
    return asyncio.run(go())


def test_the_first_token_is_the_first_event_with_content_not_the_role_event(
        upstream: RunningServer, url: str) -> None:
    upstream.configure(chunk_delay_s=0.1)  # the role event comes at once, each word 0.1 s apart
    result = one(url, body("[[say:one two three four]]"))
    assert result.error is None
    assert result.ttft_s >= 0.1
    assert result.latency_s - result.ttft_s >= 0.3


def test_tokens_are_the_servers_usage_and_the_request_asks_for_it(upstream: RunningServer, url: str) -> None:
    result = one(url, body("[[say:a b c d e f]]", max_tokens=4))
    assert (result.error, result.completion_tokens) == (None, 4)
    sent = upstream.requests[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_tokens"] == 4


@pytest.mark.parametrize(("content", "model", "reason"), [
    ("[[fail:500]]", "test-model", "HTTP 500"),
    ("[[fail:429]]", "test-model", "HTTP 429"),
    ("hello", "no-such-model", "HTTP 404"),
    ("[[fail:reset]] one two three four", "test-model", "RemoteProtocolError"),
])
def test_a_failed_request_is_an_error_with_its_reason(url: str, content: str, model: str,
                                                      reason: str) -> None:
    result = one(url, {**body(content), "model": model})
    assert result.error is not None and result.error.startswith(reason)
    assert result.completion_tokens == 0


def _sse_app(events: list[str]) -> Starlette:
    async def chat(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[bytes]:
            for event in events:
                yield f"data: {event}\n\n".encode()
        return StreamingResponse(stream(), media_type="text/event-stream")
    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


CONTENT = json.dumps({"choices": [{"index": 0, "delta": {"content": "hi"}}]})
USAGE = json.dumps({"choices": [], "usage": {"completion_tokens": 1}})


@pytest.mark.parametrize(("events", "reason"), [
    ([CONTENT, "[DONE]"], "no usage in the stream"),
    ([CONTENT, USAGE], "the stream ended without data: [DONE]"),
    ([CONTENT, json.dumps({"error": {"message": "engine died", "code": 502}}), "[DONE]"], "error event"),
    (["{not json", "[DONE]"], "JSONDecodeError"),
    ([json.dumps({"choices": [], "usage": {"prompt_tokens": 3}}), "[DONE]"], "KeyError"),
])
def test_a_stream_the_numbers_cannot_trust_is_an_error(events: list[str], reason: str) -> None:
    with serve_in_thread(_sse_app(events)) as port:
        result = one(f"http://127.0.0.1:{port}/v1/chat/completions", body("x"))
    assert result.error is not None and result.error.startswith(reason), result.error


def test_concurrency_requests_are_in_flight_together(upstream: RunningServer, url: str) -> None:
    upstream.configure(latency_s=0.3)
    load = asyncio.run(run_load(url, body=body("[[say:a b c]]"), concurrency=4, requests=8))
    assert (len(load.results), load.errors, load.tokens) == (8, [], 24)
    assert load.elapsed_s < sum(r.latency_s for r in load.results) / 2  # overlapped, not one by one
    assert load.tokens_per_s == pytest.approx(24 / load.elapsed_s)


def test_failed_requests_are_left_out_of_the_numbers(upstream: RunningServer, url: str) -> None:
    upstream.configure(fail_next=["500", "500"])
    load = asyncio.run(run_load(url, body=body("[[say:a b c]]"), concurrency=1, requests=5))
    assert len(load.ok) == 3 and [e[:8] for e in load.errors] == ["HTTP 500", "HTTP 500"]
    assert load.tokens == 9


def test_percentile_is_a_measured_value() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.9) == 4.0
    assert percentile([5.0], 0.0) == 5.0
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError, match="not within"):
        percentile([1.0], 50)


def test_rounds_merge_into_one_result() -> None:
    a = LoadResult(8, [StreamResult(0.1, 1.0, 10)], 1.0)
    b = LoadResult(8, [StreamResult(0.2, 2.0, 30), StreamResult(0.5, 0.5, 0, error="HTTP 500")], 3.0)
    merged = merge([a, b])
    assert (len(merged.results), merged.elapsed_s, merged.tokens, merged.tokens_per_s) == (3, 4.0, 40, 10.0)
    assert merged.ttft_ms(0.5) == pytest.approx(100)
    assert merged.stream_tokens_per_s() == pytest.approx(10)
    with pytest.raises(ValueError, match="same concurrency"):
        merge([a, LoadResult(1, [], 1.0)])


def test_a_load_of_nothing_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        asyncio.run(run_load(url, body=body("x"), concurrency=0, requests=1))
