"""Requests for a LoRA adapter through the gateway, over replicas that are real OpenAI-compatible
servers on loopback with vLLM's runtime LoRA endpoints (`loras`): an adapter request goes to the
replicas that hold it (read from each replica's /v1/models in the background), by prefix among
them; the adapter's name reaches the engine and comes back in the answer; /v1/models lists the
adapters; the fallback API never answers for an adapter."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from aistack.testing.gateway import base_config, run_gateway
from aistack.testing.openai_server import RunningServer, run_openai_server

BASE = "test-model"


def config(*replicas: RunningServer, **model: Any) -> dict[str, Any]:
    return base_config(replicas[0].base_url, model={"primary": {
        "adapters": ["sql", "fr"], "replicas": {"urls": [r.base_url for r in replicas]}}, **model})


def ask(url: str, model: str, system: str, *, stream: bool = False) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=20, json={
        "model": model, "stream": stream,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "q"}]})


def upstream_models(replica: RunningServer) -> list[str]:
    return [r["model"] for r in replica.requests if "messages" in r]


def test_an_adapter_goes_to_the_replicas_holding_it_by_prefix_among_them() -> None:
    with run_openai_server(models=[BASE], loras={"sql": "/c/sql"}) as a, \
            run_openai_server(models=[BASE]) as b, run_gateway(config(a, b)) as gateway:
        for i in range(20):
            reply = ask(gateway.url, "sql", f"Context of document {i}")
            assert reply.status_code == 200, reply.text
            assert reply.json()["model"] == "sql"
        assert upstream_models(a) == ["sql"] * 20 and upstream_models(b) == []
        for i in range(20):  # the base model spreads over both
            assert ask(gateway.url, "demo-model", f"Context of document {i}").status_code == 200
        assert upstream_models(b) == [BASE] * len(upstream_models(b)) and len(upstream_models(b)) >= 5

        b.server.configure(loras={"sql": "/c/sql"})  # b's agent loaded it too
        time.sleep(2.5)  # the gateway reads the replicas' adapters every 2 s
        ask(gateway.url, "sql", "refresh")
        time.sleep(0.3)
        before_a, before_b = len(upstream_models(a)), len(upstream_models(b))
        for i in range(30):
            assert ask(gateway.url, "sql", f"Other context {i}").status_code == 200
        on_a, on_b = len(upstream_models(a)) - before_a, len(upstream_models(b)) - before_b
        assert on_a >= 5 and on_b >= 5, (on_a, on_b)
        before_b = len(upstream_models(b))
        for _ in range(6):  # one prefix keeps to one replica
            ask(gateway.url, "sql", "Other context 3")
        assert len(upstream_models(b)) - before_b in (0, 6)


def test_the_adapter_name_reaches_the_engine_and_comes_back_streamed_and_as_text() -> None:
    with run_openai_server(models=[BASE], loras={"fr": "/c/fr"}) as a, run_gateway(config(a)) as gateway:
        streamed = ask(gateway.url, "fr", "sys", stream=True)
        assert streamed.status_code == 200
        chunks = [json.loads(line[6:]) for line in streamed.text.splitlines()
                  if line.startswith("data: {")]
        assert chunks and {c["model"] for c in chunks} == {"fr"}
        text = httpx.post(f"{gateway.url}/v1/completions", timeout=20,
                          json={"model": "fr", "prompt": "Bonjour", "max_tokens": 4})
        assert text.status_code == 200, text.text
        assert text.json()["model"] == "fr"
        assert [r["model"] for r in a.requests if "prompt" in r or "messages" in r] == ["fr", "fr"]


def test_models_lists_the_adapters_and_an_unknown_name_says_what_is_served() -> None:
    with run_openai_server(models=[BASE]) as a, run_gateway(config(a)) as gateway:
        listed = httpx.get(f"{gateway.url}/v1/models", timeout=10).json()
        assert [m["id"] for m in listed["data"]] == ["demo-model", "sql", "fr"]
        unknown = ask(gateway.url, "nope", "sys")
        assert unknown.status_code == 404
        error = unknown.json()["error"]
        assert error["code"] == "model_not_found" and error["param"] == "model"
        assert "`demo-model`, `sql`, `fr`" in error["message"]


def test_an_adapter_request_is_never_answered_by_the_fallback() -> None:
    with run_openai_server(models=[BASE], loras={"sql": "/c/sql"}) as a, \
            run_openai_server(models=["gpt-4o-mini"]) as api:
        fallback = {"baseUrl": api.base_url, "model": "gpt-4o-mini", "timeoutSeconds": 5}
        with run_gateway(config(a, fallback=fallback)) as gateway:
            a.server.configure(fail_next=["500"] * 6)
            refused = ask(gateway.url, "sql", "sys")
            assert refused.status_code >= 500
            assert not [r for r in api.requests if "messages" in r]
            a.server.configure(fail_next=["500"] * 6)
            assert ask(gateway.url, "demo-model", "sys").status_code == 200  # the base may fall back
            assert [r["model"] for r in api.requests if "messages" in r] == ["gpt-4o-mini"]


def test_an_adapter_no_replica_holds_is_a_503_saying_so_never_the_base() -> None:
    with run_openai_server(models=[BASE]) as a, run_gateway(config(a)) as gateway:
        for stream in (False, True):
            reply = ask(gateway.url, "sql", "sys", stream=stream)
            assert reply.status_code == 503, reply.text
            error = reply.json()["error"]
            assert error["code"] == "adapter_unavailable" and "`sql` is not loaded" in error["message"]
        assert upstream_models(a) == ["sql", "sql"]  # asked for the adapter, never answered by the base
