"""The model client's retry policy against real upstreams on loopback: only what another try can
fix is retried, Retry-After is honoured, a breaker keeps traffic from a failing upstream, and a
slow failure late in the request's budget is not retried."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from aistack.api.gateway_config import Upstream
from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.core.retry import Backoff, CircuitBreaker
from aistack.runtime.gateway.upstream import HttpPool, ModelClient, UpstreamError
from aistack.runtime.local.ports import free_port
from aistack.testing.openai_server import run_openai_server

PAYLOAD = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def primary():
    with run_openai_server() as server:
        yield server


@pytest.fixture(scope="module")
def backup():
    with run_openai_server(models=["backup-model"]) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(primary, backup):
    for server in (primary, backup):
        server.configure(fail_next=[], latency_s=0.0, retry_after=None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def client(primary_url: str, fallback_url: str | None = None, *, clock: Clock | None = None,
           timeout_s: float = 5.0) -> ModelClient:
    fallback = Upstream(base_url=fallback_url, model="backup-model") if fallback_url else None
    return ModelClient(primary=Upstream(base_url=primary_url, model="test-model", timeout_seconds=timeout_s),
                       fallback=fallback, http=HttpPool(), metrics=GatewayMetrics(),
                       backoff=Backoff(base_s=0.01, cap_s=1.0),
                       breaker=lambda: CircuitBreaker(threshold=5, open_s=10, clock=clock or time.monotonic))


def run(model: ModelClient, body: Callable[[ModelClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        try:
            return await body(model)
        finally:
            await model.http.aclose()
    return asyncio.run(main())


def complete(model: ModelClient, **kw: Any) -> tuple[dict[str, Any], str]:
    async def body(m: ModelClient) -> tuple[dict[str, Any], str]:
        response, target = await m.complete(PAYLOAD, **kw)
        return response, target.role
    return run(model, body)


def test_connect_errors_429_and_502_to_504_are_retried(primary):
    primary.configure(fail_next=["429", "502"])
    before = len(primary.requests)
    assert complete(client(primary.base_url))[1] == "primary"
    assert len(primary.requests) - before == 3
    primary.configure(fail_next=["503", "504"])

    async def stream(m: ModelClient) -> str:
        upstream = await m.stream(PAYLOAD)
        return "".join([(c["choices"][0]["delta"].get("content") or "") async for c in upstream
                        if c.get("choices")])
    assert run(client(primary.base_url), stream) == "Echo: hi"


def test_a_refusing_upstream_is_retried_then_the_fallback_serves(backup):
    model = client(f"http://127.0.0.1:{free_port()}/v1", backup.base_url)
    assert complete(model)[1] == "fallback"
    assert model.metrics.upstream_errors.labels("primary", "upstream_unavailable")._value.get() == 3


@pytest.mark.parametrize("status", ["500", "401", "403", "404"])
def test_what_would_fail_again_is_not_retried_but_goes_to_the_fallback(primary, backup, status):
    primary.configure(fail_next=[status])
    before = len(primary.requests)
    response, role = complete(client(primary.base_url, backup.base_url))
    assert role == "fallback" and len(primary.requests) - before == 1
    primary.configure(fail_next=[status])
    with pytest.raises(UpstreamError):
        complete(client(primary.base_url))
    assert len(primary.requests) - before == 2


@pytest.mark.parametrize("status", ["400", "422"])
def test_a_refused_request_goes_to_no_other_upstream(primary, backup, status):
    primary.configure(fail_next=[status])
    before = len(backup.requests)
    with pytest.raises(UpstreamError) as err:
        complete(client(primary.base_url, backup.base_url))
    assert err.value.code == "upstream_bad_request" and len(backup.requests) == before


class RecordingBackoff(Backoff):
    def __init__(self) -> None:
        super().__init__(base_s=0.01, cap_s=1.0)
        object.__setattr__(self, "waits", [])

    def wait_s(self, attempt: int, *, retry_after: float | None = None, rng: Any = None) -> float | None:
        wait = super().wait_s(attempt, retry_after=retry_after)
        self.waits.append(wait)  # type: ignore[attr-defined]
        return wait


def test_retry_after_is_waited_for(primary):
    primary.configure(fail_next=["429"], retry_after="0.3")
    model = client(primary.base_url)
    model.backoff = backoff = RecordingBackoff()
    assert complete(model)[1] == "primary"
    assert len(backoff.waits) == 1 and 0.3 <= backoff.waits[0] <= 0.31  # type: ignore[attr-defined]


def test_a_retry_after_longer_than_the_cap_goes_straight_to_the_fallback(primary, backup):
    primary.configure(fail_next=["503"], retry_after="30")
    before = len(primary.requests)
    assert complete(client(primary.base_url, backup.base_url))[1] == "fallback"
    assert len(primary.requests) - before == 1


def test_the_breaker_sends_traffic_straight_to_the_fallback_then_probes(primary, backup):
    clock = Clock()
    model = client(primary.base_url, backup.base_url, clock=clock)
    primary.configure(fail_next=["502"] * 5)
    start = len(primary.requests)

    async def body(m: ModelClient) -> list[str]:
        roles = []
        for step in range(5):
            if step == 3:
                clock.now += 10  # the breaker's open period is over
            _, target = await m.complete(PAYLOAD)
            roles.append(target.role)
            if step == 2:
                assert m.metrics.upstream_circuit_open.labels("primary")._value.get() == 1
        return roles

    # 1st: three 502s; 2nd: two more open the breaker; 3rd: the primary is not asked;
    # 4th: the half-open probe succeeds and closes it; 5th: the primary as usual.
    assert run(model, body) == ["fallback", "fallback", "fallback", "primary", "primary"]
    assert len(primary.requests) - start == 7
    assert model.metrics.upstream_errors.labels("primary", "circuit_open")._value.get() == 1
    assert model.metrics.upstream_circuit_open.labels("primary")._value.get() == 0


def test_without_a_fallback_an_open_breaker_answers_at_once(primary):
    clock = Clock()
    model = client(primary.base_url, clock=clock)
    primary.configure(fail_next=["502"] * 6)
    start = len(primary.requests)

    async def body(m: ModelClient) -> list[str]:
        codes = []
        for _ in range(3):
            with pytest.raises(UpstreamError) as err:
                await m.complete(PAYLOAD)
            codes.append(err.value.code or "")
        return codes

    assert run(model, body) == ["upstream_error", "upstream_error", "upstream_unavailable"]
    assert len(primary.requests) - start == 5


def test_a_slow_504_late_in_the_budget_is_not_retried(primary):
    primary.configure(fail_next=["504"] * 3, latency_s=0.6)
    before = len(primary.requests)
    with pytest.raises(UpstreamError) as err:
        complete(client(primary.base_url), deadline=time.perf_counter() + 1.0)
    assert err.value.status == 502 and len(primary.requests) - before == 1


def test_a_slow_504_is_retried_only_while_half_the_budget_is_left(primary):
    primary.configure(fail_next=["504"] * 3, latency_s=0.6)
    before = len(primary.requests)
    with pytest.raises(UpstreamError) as err:
        complete(client(primary.base_url), deadline=time.perf_counter() + 2.0)
    assert err.value.code == "upstream_error" and len(primary.requests) - before == 2


def test_fast_504s_with_budget_left_are_retried(primary):
    primary.configure(fail_next=["504"] * 2)
    before = len(primary.requests)
    assert complete(client(primary.base_url), deadline=time.perf_counter() + 30)[1] == "primary"
    assert len(primary.requests) - before == 3


def test_a_timeout_is_not_retried_and_the_fallback_gets_what_is_left(primary, backup):
    primary.configure(latency_s=3.0)
    before = len(primary.requests)
    _, role = complete(client(primary.base_url, backup.base_url, timeout_s=0.5),
                       deadline=time.perf_counter() + 20)
    assert role == "fallback" and len(primary.requests) - before == 1
