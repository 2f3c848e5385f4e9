"""The OpenAI API as clients use it (issue 21), through the real `openai` SDK against the fake
upstream: nothing but the model's text in an answer (notices go in `x-aistack-notice`)."""

from __future__ import annotations

import json

import httpx
import pytest

from aistack.testing.gateway import RecordingTracer, base_config, run_gateway

NOTICE = "offline model SmolLM2-135M-Instruct, not gpt-4o-mini; answers are weak"


@pytest.fixture(scope="module")
def noticed(upstream):
    """A gateway whose model config carries a notice, as `aistack up` sets for the offline model."""
    with run_gateway(base_config(upstream.base_url, model={"notice": NOTICE})) as gw:
        yield gw


def test_a_notice_goes_in_the_header_log_and_trace_never_in_the_text(noticed):
    tracer = RecordingTracer()
    noticed.app.state["holder"].current.tracer = tracer
    raw = noticed.client().chat.completions.with_raw_response.create(
        model="demo-model", messages=[{"role": "user", "content": '[[say:{"a": 1}]]'}])
    assert raw.headers["x-aistack-notice"] == NOTICE
    assert json.loads(raw.parse().choices[0].message.content) == {"a": 1}  # the model's text, whole
    assert tracer.traces[-1].root.attributes["notices"] == [NOTICE]
    streamed = httpx.post(f"{noticed.url}/v1/chat/completions", timeout=10, json={
        "model": "demo-model", "stream": True, "messages": [{"role": "user", "content": "[[say:x y]]"}]})
    assert streamed.headers["x-aistack-notice"] == NOTICE
    deltas = [json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
              for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert "".join(deltas) == "x y"
