"""Upstream failures become clear OpenAI errors; retries before the first byte, only of what can
succeed and within the request's budget; fallback; an oversized stream event."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from aistack.runtime.local.ports import free_port
from aistack.testing.gateway import RecordingTracer, base_config, run_gateway
from aistack.testing.openai_server import run_openai_server


@pytest.fixture(scope="module")
def gw(upstream):
    with run_gateway(base_config(upstream.base_url, model={"primary": {"timeoutSeconds": 1}})) as gateway:
        yield gateway


def ask(gw, text, **kw):
    return gw.client().chat.completions.create(model="demo-model",
                                               messages=[{"role": "user", "content": text}], **kw)


def test_transient_failures_are_retried_before_the_first_byte(gw, upstream):
    upstream.configure(fail_next=["502", "503"])
    assert ask(gw, "again").choices[0].message.content == "Echo: again"
    upstream.configure(fail_next=["429", "504"])
    chunks = list(ask(gw, "[[say:streamed fine]]", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "streamed fine"


def test_persistent_502_is_502_after_retries(gw, upstream):
    before = len(upstream.requests)
    with pytest.raises(openai.InternalServerError) as err:
        ask(gw, "[[fail:502]]")
    assert err.value.status_code == 502 and err.value.code == "upstream_error"
    assert len(upstream.requests) - before == 3
    assert 'aistack_gateway_upstream_errors_total{kind="upstream_error",upstream="primary"} ' in gw.metrics()


@pytest.mark.parametrize("status", ["500", "401", "403", "404"])
def test_what_would_fail_again_is_tried_once(gw, upstream, status):
    before = len(upstream.requests)
    with pytest.raises(openai.InternalServerError) as err:
        ask(gw, f"[[fail:{status}]]")
    assert err.value.status_code == 502 and len(upstream.requests) - before == 1


def test_a_slow_504_is_not_retried_when_the_budget_is_mostly_spent(upstream):
    # Budget 3 s, each 504 after 1.6 s: a second try could only end in the request's own timeout.
    upstream.configure(fail_next=["504"] * 3, latency_s=1.6)
    cfg = base_config(upstream.base_url, model={"primary": {"timeoutSeconds": 10}},
                      orchestration={"timeouts": {"requestSeconds": 3}})
    with run_gateway(cfg) as gw:
        before = len(upstream.requests)
        with pytest.raises(openai.InternalServerError) as err:
            ask(gw, "slow")
        assert err.value.code == "upstream_error" and "HTTP 504" in err.value.message
        assert len(upstream.requests) - before == 1


def test_a_stream_event_over_the_line_limit_ends_with_an_error_event_and_is_traced(gw):
    tracer = RecordingTracer()
    gw.app.state["holder"].current.tracer = tracer
    try:
        body = {"model": "demo-model", "stream": True,
                "messages": [{"role": "user", "content": "[[big:600000]]"}]}
        with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, timeout=20) as resp:
            assert resp.status_code == 200
            events = [line for line in resp.iter_lines() if line.startswith("data:")]
    finally:
        gw.app.state["holder"].current.tracer = RecordingTracer()
    assert "event_too_large" in events[-1] and "longer than 512 KiB" in events[-1]
    assert tracer.traces and "longer than 512 KiB" in (tracer.traces[-1].root.error or "")


def test_upstream_rate_limit_is_429(gw, upstream):
    upstream.configure(fail_next=["429"] * 3)
    with pytest.raises(openai.RateLimitError):
        ask(gw, "x")


def test_timeout_is_504_without_waiting_for_the_upstream(gw):
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as err:
        ask(gw, "[[fail:timeout]]")
    assert err.value.status_code == 504 and err.value.code == "upstream_timeout"
    assert time.monotonic() - started < 3


def test_streaming_timeout_before_first_byte_is_a_json_504(gw):
    body = {"model": "demo-model", "stream": True,
            "messages": [{"role": "user", "content": "[[fail:timeout]]"}]}
    resp = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=10)
    assert resp.status_code == 504 and resp.json()["error"]["code"] == "upstream_timeout"


def test_connection_reset_mid_stream_ends_with_an_error_event(gw):
    stream = ask(gw, "[[fail:reset]] one two three four", stream=True)
    got = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert "mid-stream" in str(err.value.message)
    assert "".join(got).startswith("Echo:")


def test_unreachable_primary_is_503():
    cfg = base_config(f"http://127.0.0.1:{free_port()}/v1")
    with run_gateway(cfg) as gw:
        with pytest.raises(openai.InternalServerError) as err:
            ask(gw, "x")
        assert err.value.status_code == 503 and err.value.code == "upstream_unavailable"
        assert httpx.get(f"{gw.url}/readyz").status_code == 503


def test_fallback_serves_when_the_primary_is_down(upstream):
    with run_openai_server(models=["backup-model"]) as backup:
        cfg = base_config(f"http://127.0.0.1:{free_port()}/v1",
                          model={"fallback": {"baseUrl": backup.base_url, "model": "backup-model"}})
        with run_gateway(cfg) as gw:
            raw = gw.client().chat.completions.with_raw_response.create(
                model="demo-model", messages=[{"role": "user", "content": "hi"}])
            out = raw.parse()
            assert out.choices[0].message.content == "Echo: hi" and out.model == "demo-model"
            assert "fallback model (backup-model)" in raw.headers["x-aistack-notice"]  # beside the text
            assert backup.requests[-1]["model"] == "backup-model"
            streamed = httpx.post(f"{gw.url}/v1/chat/completions", timeout=10, json={
                "model": "demo-model", "stream": True,
                "messages": [{"role": "user", "content": "[[say:via backup]]"}]})
            assert "fallback model" in streamed.headers["x-aistack-notice"]
            chunks = [json.loads(line[6:]) for line in streamed.text.splitlines()
                      if line.startswith("data: {")]
            assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "via backup"
            assert "aistack_gateway_fallbacks_total 2.0" in gw.metrics()
            assert httpx.get(f"{gw.url}/readyz").status_code == 200


def test_upstream_api_key_comes_from_env(monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", "sekret")
    with run_openai_server(api_key="sekret") as keyed:
        with run_gateway(base_config(keyed.base_url, model={"primary": {"apiKeyEnv": "UPSTREAM_KEY"}})) as gw:
            assert ask(gw, "ok").choices[0].message.content == "Echo: ok"
    monkeypatch.delenv("UPSTREAM_KEY")
    with pytest.raises(ValueError, match="UPSTREAM_KEY is unset"):
        run_gateway(base_config("http://127.0.0.1:1/v1",
                                model={"primary": {"apiKeyEnv": "UPSTREAM_KEY"}})).__enter__()
