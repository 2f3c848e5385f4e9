"""SSE keep-alives: a stream whose answer is held (before its first event, or for the
self_check_output rail) gets `: keep-alive` comments, so a proxy's idle timeout does not cut it."""

from __future__ import annotations

import json

import httpx
import pytest

from aistack.runtime.gateway.streaming import keepalive
from aistack.testing.gateway import base_config, run_gateway

RAILS = {"input": [], "output": ["self_check_output"], "refusalMessage": "no"}


def stream(gw, text: str) -> tuple[int, list[str]]:
    body = {"model": "demo-model", "stream": True, "messages": [{"role": "user", "content": text}]}
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, timeout=30) as resp:
        return resp.status_code, [line for line in resp.iter_lines() if line]


def content(lines: list[str]) -> str:
    out = ""
    for line in lines:
        if line.startswith("data: {"):
            event = json.loads(line[6:])
            out += "".join(c["delta"].get("content") or "" for c in event.get("choices") or [])
    return out


@pytest.fixture(scope="module")
def gw(upstream):
    with run_gateway(base_config(upstream.base_url, server={"sseKeepaliveSeconds": 0.2})) as gateway:
        yield gateway


def test_a_request_held_before_its_first_event_gets_keepalives(gw, upstream):
    upstream.configure(latency_s=1.0)
    status, lines = stream(gw, "[[say:held for a while]]")
    assert status == 200
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data:"))
    assert lines[:first_data] and set(lines[:first_data]) == {": keep-alive"}
    assert content(lines) == "held for a while" and lines[-1] == "data: [DONE]"


def test_an_error_after_the_hold_is_an_error_event(gw, upstream):
    upstream.configure(latency_s=0.8)
    status, lines = stream(gw, "[[fail:400]]")
    assert status == 200 and lines[0] == ": keep-alive"
    error = json.loads(lines[-1][6:])["error"]
    assert error["code"] == "upstream_bad_request"


def test_a_quick_answer_has_no_keepalive_and_a_quick_error_stays_json(gw, upstream):
    status, lines = stream(gw, "[[say:quick]]")
    assert status == 200 and not any(line.startswith(":") for line in lines)
    assert content(lines) == "quick"
    resp = httpx.post(f"{gw.url}/v1/chat/completions", timeout=10, json={
        "model": "demo-model", "stream": True, "messages": [{"role": "user", "content": "[[fail:400]]"}]})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "upstream_bad_request"


def test_an_answer_held_for_self_check_output_gets_keepalives(upstream):
    cfg = base_config(upstream.base_url, server={"sseKeepaliveSeconds": 0.2},
                      guardrails={"rails": RAILS, "engine": "inprocess"})
    upstream.configure(chunk_delay_s=0.15)
    with run_gateway(cfg) as gw:
        status, lines = stream(gw, "[[say:one two three four five six seven eight]]")
    assert status == 200
    first_content = next(i for i, line in enumerate(lines) if content([line]))
    assert ": keep-alive" in lines[:first_content]
    assert content(lines) == "one two three four five six seven eight" and lines[-1] == "data: [DONE]"


async def test_keepalive_passes_the_body_through_and_closes_it():
    closed = []

    async def body():
        try:
            for i in range(3):
                yield f"data: {i}\n\n".encode()
        finally:
            closed.append(True)

    parts = [p async for p in keepalive(body(), interval_s=5)]
    assert parts == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"] and closed == [True]
