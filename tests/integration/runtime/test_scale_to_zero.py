"""A request to a model at zero replicas is held by the gateway while the model starts: answered once
its replica (the deterministic OpenAI server) starts listening, or a 503 with Retry-After in the
OpenAI error shape once the hold is over; a held stream gets SSE keep-alive comments meanwhile; and
the held demand reaches the operator's load Lease at once (the emulated API server as the cluster).

The replica "appears" as a starting engine does: its port is bound but refuses connections until
the server listens on it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from aistack.api.model_load import LoadReport, report_key
from aistack.operator.kube import CHILD_KINDS
from aistack.runtime.core.kube_api import KUBE_API_ENV
from aistack.testing.cluster import Cluster, wait_for
from aistack.testing.emulator import EmulatorThread
from aistack.testing.gateway import base_config, run_gateway
from aistack.testing.starting_server import StartingReplica


def scaled(r: StartingReplica, *, hold: float, **scaling: Any) -> dict[str, Any]:
    return base_config(r.base_url, model={
        "primary": {"replicas": {"urls": [r.base_url], "policy": "least-busy"}},
        "scaling": {"targetRequests": 4, "holdSeconds": hold, **scaling}},
        server={"sseKeepaliveSeconds": 0.2})


def ask(url: str, *, stream: bool = False) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
        "model": "demo-model", "stream": stream, "messages": [{"role": "user", "content": "hello"}]})


def held_gauge(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("aistack_gateway_model_held{"):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


def test_a_held_request_is_answered_when_the_replica_starts() -> None:
    with StartingReplica() as r, run_gateway(scaled(r, hold=10)) as gateway:
        assert httpx.get(f"{gateway.url}/readyz").status_code == 200  # in its Service, to wake the model
        result: dict[str, Any] = {}
        started = time.monotonic()
        thread = threading.Thread(target=lambda: result.update(response=ask(gateway.url)))
        thread.start()
        wait_for(lambda: held_gauge(gateway.url) == 1.0, what="the request held")
        r.start_after(1.0)
        thread.join(20)
        response = result["response"]
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"]
        assert time.monotonic() - started >= 1.0
        assert held_gauge(gateway.url) == 0.0


def test_after_the_hold_a_503_with_retry_after_in_the_openai_shape() -> None:
    with StartingReplica() as r, run_gateway(scaled(r, hold=1)) as gateway:
        started = time.monotonic()
        response = ask(gateway.url)
        assert time.monotonic() - started >= 1.0
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "30"
        error = response.json()["error"]
        assert error["code"] == "model_starting" and error["type"] == "server_error"
        assert "scaled to zero" in error["message"]


def test_a_held_stream_gets_keep_alive_comments_then_the_answer() -> None:
    with StartingReplica() as r, run_gateway(scaled(r, hold=10)) as gateway:
        r.start_after(1.2)
        lines: list[str] = []
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", timeout=30, json={
                "model": "demo-model", "stream": True,
                "messages": [{"role": "user", "content": "hello"}]}) as response:
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line]
        first_data = next(i for i, line in enumerate(lines) if line.startswith("data:"))
        assert lines[:first_data].count(": keep-alive") >= 3  # every 0.2 s while held
        assert lines[-1] == "data: [DONE]"


def test_a_held_stream_that_waits_out_the_hold_ends_with_an_error_event() -> None:
    with StartingReplica() as r, run_gateway(scaled(r, hold=1)) as gateway:
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", timeout=30, json={
                "model": "demo-model", "stream": True,
                "messages": [{"role": "user", "content": "hello"}]}) as response:
            lines = [line for line in response.iter_lines() if line]
        assert ": keep-alive" in lines
        assert any("model_starting" in line for line in lines if line.startswith("data:"))


def test_held_demand_reaches_the_load_lease_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    lease = CHILD_KINDS["Lease"]
    with EmulatorThread() as thread, StartingReplica() as r:
        cluster = Cluster(thread)
        cluster.kube.create(lease, "default", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                               "metadata": {"name": "demo-model-load"}, "spec": {}})
        monkeypatch.setenv(KUBE_API_ENV, thread.url)
        monkeypatch.setenv("HOSTNAME", "demo-gateway-abc12")
        key = report_key("demo-gateway-abc12")

        def reported() -> LoadReport | None:
            stored = cluster.kube.get(lease, "default", "demo-model-load") or {}
            value = (stored.get("metadata", {}).get("annotations") or {}).get(key)
            return LoadReport.decode(value) if value else None

        with run_gateway(scaled(r, hold=10, reportLease="demo-model-load")) as gateway:
            result: dict[str, Any] = {}
            worker = threading.Thread(target=lambda: result.update(response=ask(gateway.url)))
            worker.start()
            held = wait_for(lambda: (report := reported()) is not None and report.held == 1 and report,
                            timeout=2, what="the held request reported")
            assert held.demand == 1 and abs(held.at - time.time()) < 5
            r.start()
            worker.join(20)
            assert result["response"].status_code == 200
            done = wait_for(lambda: (report := reported()) is not None and report.demand == 0 and report,
                            timeout=3, what="the demand back to zero reported")
            assert done.held == 0
            patches = [p for m, p in thread.emulator.log if m == "PATCH" and p.endswith("/demo-model-load")]
            assert 2 <= len(patches) <= 4  # held, (answered,) back to zero: not one per change
