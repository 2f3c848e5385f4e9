"""The gateway over a model's replicas, each a real OpenAI-compatible server on loopback: a prompt
prefix keeps to one replica and prefixes spread over both; a replica that goes away leaves the
ring and its requests (JSON and streamed) go to the other before their first byte; round robin
alternates; a headless Service's name is resolved to the replicas (here `localhost`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from aistack.testing.gateway import base_config, run_gateway
from aistack.testing.openai_server import RunningServer, run_openai_server


@contextlib.contextmanager
def two_replicas() -> Iterator[tuple[RunningServer, RunningServer, contextlib.ExitStack]]:
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(run_openai_server())
        second = contextlib.ExitStack()
        b = second.enter_context(run_openai_server())
        try:
            yield a, b, second
        finally:
            second.close()


def routed(a: RunningServer, b: RunningServer, **replicas: Any) -> dict[str, Any]:
    return base_config(a.base_url, model={"primary": {"replicas": {"urls": [a.base_url, b.base_url],
                                                                   **replicas}}})


def ask(url: str, system: str, question: str, *, stream: bool = False) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=20, json={
        "model": "demo-model", "stream": stream,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]})


def test_a_prefix_keeps_to_one_replica_and_prefixes_spread() -> None:
    with two_replicas() as (a, b, _), run_gateway(routed(a, b)) as gateway:
        context = "You are the support assistant. Context: " + "the refunds policy says... " * 200
        for i in range(6):  # one long shared context (what the prefix cache reuses), six questions
            assert ask(gateway.url, context, f"question {i}").status_code == 200
        assert sorted((len(a.requests), len(b.requests))) == [0, 6]
        for i in range(40):
            assert ask(gateway.url, f"Context of document {i}", "q").status_code == 200
        assert len(a.requests) >= 10 and len(b.requests) >= 10  # 40 prefixes over 2 replicas


def test_a_replica_that_goes_away_loses_its_requests_to_the_other_before_the_first_byte() -> None:
    with two_replicas() as (a, b, stop_b), run_gateway(routed(a, b)) as gateway:
        systems = [f"Context of document {i}" for i in range(20)]
        for s in systems:
            assert ask(gateway.url, s, "q").status_code == 200
        on_b = len(b.requests)
        assert on_b > 0
        stop_b.close()  # replica b is gone (its port refuses connections)
        before = len(a.requests)
        for i, s in enumerate(systems):
            reply = ask(gateway.url, s, "again", stream=i % 2 == 0)
            assert reply.status_code == 200, reply.text
            assert "error" not in reply.text
        assert len(a.requests) - before == len(systems)  # every one answered by a
        assert "upstream_unavailable" in gateway.metrics()  # counted, though no client saw it


def test_round_robin_alternates_and_a_dns_name_finds_the_replicas() -> None:
    with two_replicas() as (a, b, _):
        with run_gateway(routed(a, b, policy="round-robin")) as gateway:
            for i in range(10):
                assert ask(gateway.url, "same prefix", f"q{i}").status_code == 200
            assert (len(a.requests), len(b.requests)) == (5, 5)
        dns = base_config("http://unused.invalid/v1", model={"primary": {"replicas": {
            "dnsName": "localhost", "port": a.port}}})
        with run_gateway(dns) as gateway:
            assert ask(gateway.url, "resolved", "q").status_code == 200
        assert len(a.requests) == 6
