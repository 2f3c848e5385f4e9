"""The engine's numbers from vLLM's /metrics: a page recorded from the real engine (vLLM 0.32.0,
SmolLM2-135M on the CPU: `0.32.0-busy.txt` with six requests in flight, `0.32.0-idle.txt` before
the first), what is not an engine, and engines that fail, served on loopback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from aistack.api.gateway_config import Upstream
from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.gateway.engine_metrics import (EngineLoad, EngineMetrics, MetricsUnavailable,
                                                    metrics_url, parse_engine_metrics, scrape)
from aistack.runtime.gateway.upstream import Target
from aistack.testing.gateway import base_config, run_gateway
from aistack.testing.openai_server import serve_in_thread

PAGES = Path(__file__).parent / "vllm_metrics"
BUSY = (PAGES / "0.32.0-busy.txt").read_text()
IDLE = (PAGES / "0.32.0-idle.txt").read_text()


@dataclass
class FakeEngine:
    """A loopback server whose /metrics answers `page` with `status`, after `delay_s`."""

    page: str = BUSY
    status: int = 200
    delay_s: float = 0.0
    reads: list[float] = field(default_factory=list)
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def metrics(self, request: Request) -> PlainTextResponse:
        self.reads.append(time.monotonic())
        await asyncio.sleep(self.delay_s)
        return PlainTextResponse(self.page, status_code=self.status)


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    with serve_in_thread(Starlette(routes=[Route("/metrics", fake.metrics)])) as port:
        fake.port = port
        yield fake


def parse(text: str) -> EngineLoad | MetricsUnavailable:
    return parse_engine_metrics(text, scraped_at=1.0)


def test_the_recorded_page_of_a_busy_engine_gives_its_load() -> None:
    load = parse(BUSY)
    assert isinstance(load, EngineLoad)
    assert (load.running, load.waiting) == (6, 0)
    assert load.kv_cache_usage == pytest.approx(0.03314917127071826)
    assert (load.prefix_cache_queries, load.prefix_cache_hits) == (636, 256)
    assert load.prefix_cache_hit_rate == pytest.approx(256 / 636)


def test_an_engine_that_looked_nothing_up_has_no_hit_rate() -> None:
    load = parse(IDLE)
    assert isinstance(load, EngineLoad)
    assert (load.running, load.waiting, load.kv_cache_usage) == (0, 0, 0)
    assert load.prefix_cache_hit_rate is None


def test_data_parallel_engines_are_summed_and_their_cache_usage_averaged() -> None:
    second = [line.replace('engine="0"', 'engine="1"') for line in BUSY.splitlines()
              if line.startswith("vllm:") and 'engine="0"' in line]
    second = [line.rsplit(" ", 1)[0] + " 0.5" if line.startswith("vllm:kv_cache_usage_perc") else line
              for line in second]
    load = parse(BUSY + "\n".join(second) + "\n")
    assert isinstance(load, EngineLoad)
    assert (load.running, load.prefix_cache_queries) == (12, 1272)
    assert load.kv_cache_usage == pytest.approx((0.03314917127071826 + 0.5) / 2)


@pytest.mark.parametrize("page", [
    "",
    "<html><body>Not Found</body></html>",
    generate_latest(GatewayMetrics().registry).decode(),  # Prometheus text, but no vLLM series
    BUSY.replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),  # an older vLLM's name
])
def test_a_page_without_the_vllm_series_is_no_engine(page: str) -> None:
    result = parse(page)
    assert isinstance(result, MetricsUnavailable) and result.engine_absent
    assert "not a vLLM engine" in result.reason


@pytest.mark.parametrize(("line", "says"), [
    ('vllm:num_requests_running{engine="0" 3', "not valid Prometheus text"),
    ('vllm:num_requests_running{engine="1",model_name="m"} abc', "not valid Prometheus text"),
    ('vllm:kv_cache_usage_perc{engine="1",model_name="m"} 1.7', "out of range (vllm:kv_cache_usage_perc)"),
    ('vllm:num_requests_waiting{engine="1",model_name="m"} NaN', "out of range (vllm:num_requests_waiting)"),
    ('vllm:num_requests_running{engine="1",model_name="m"} -1', "out of range (vllm:num_requests_running)"),
])
def test_a_malformed_engine_page_is_unavailable_saying_why(line: str, says: str) -> None:
    result = parse(BUSY + line + "\n")
    assert isinstance(result, MetricsUnavailable) and not result.engine_absent
    assert says in result.reason


@pytest.mark.parametrize(("base_url", "url"), [
    ("http://vllm.ns.svc:8000/v1", "http://vllm.ns.svc:8000/metrics"),
    ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/metrics"),
    ("https://example.com/openai", "https://example.com/openai/metrics"),
])
def test_the_metrics_page_sits_beside_v1(base_url: str, url: str) -> None:
    assert metrics_url(base_url) == url


async def test_a_scrape_reads_the_engines_page(engine: FakeEngine) -> None:
    async with httpx.AsyncClient() as http:
        load = await scrape(http, metrics_url(engine.base_url))
    assert isinstance(load, EngineLoad) and load.running == 6
    assert abs(load.scraped_at - time.time()) < 5


@pytest.mark.parametrize(("status", "absent"), [(404, True), (405, True), (500, False), (401, False)])
async def test_an_error_status_is_unavailable(engine: FakeEngine, status: int, absent: bool) -> None:
    engine.status = status
    async with httpx.AsyncClient() as http:
        result = await scrape(http, metrics_url(engine.base_url))
    assert isinstance(result, MetricsUnavailable) and result.engine_absent is absent
    assert f"HTTP {status}" in result.reason


async def test_a_hanging_engine_costs_at_most_the_timeout(engine: FakeEngine) -> None:
    engine.delay_s = 5
    started = time.monotonic()
    async with httpx.AsyncClient() as http:
        result = await scrape(http, metrics_url(engine.base_url), timeout_s=0.3)
    assert time.monotonic() - started < 1.5
    assert isinstance(result, MetricsUnavailable) and not result.engine_absent
    assert "did not answer within 0.3 s" in result.reason


async def test_a_page_too_large_for_an_engine_is_refused(engine: FakeEngine) -> None:
    engine.page = "# " + "x" * (5 * 1024 * 1024)
    async with httpx.AsyncClient() as http:
        result = await scrape(http, metrics_url(engine.base_url))
    assert isinstance(result, MetricsUnavailable) and result.engine_absent and "more than" in result.reason


async def test_an_engine_that_is_not_there_is_unreachable() -> None:
    async with httpx.AsyncClient() as http:
        result = await scrape(http, "http://127.0.0.1:9/metrics")
    assert isinstance(result, MetricsUnavailable) and "unreachable (ConnectError)" in result.reason


def samples(metrics: GatewayMetrics) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("upstream", "")): s.value
            for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
            for s in family.samples if s.name.startswith("aistack_engine_")}


async def test_the_gauges_follow_the_engine_and_a_failure_is_logged_once(
        engine: FakeEngine, caplog: pytest.LogCaptureFixture) -> None:
    metrics = GatewayMetrics()
    targets = [Target.of("primary", Upstream(base_url=engine.base_url, model="m"))]
    async with httpx.AsyncClient() as http:
        reader = EngineMetrics(http=http, metrics=metrics, targets=lambda: targets, timeout_s=0.3)
        assert reader.latest() is None
        await reader.refresh()
        assert samples(metrics) == {
            ("aistack_engine_metrics_available", "primary"): 1,
            ("aistack_engine_requests_running", "primary"): 6,
            ("aistack_engine_requests_waiting", "primary"): 0,
            ("aistack_engine_kv_cache_usage_ratio", "primary"): pytest.approx(0.0331, abs=1e-4),
            ("aistack_engine_prefix_cache_hit_ratio", "primary"): pytest.approx(256 / 636)}
        engine.status = 500
        with caplog.at_level(logging.INFO, logger="aistack.gateway.engine"):
            for _ in range(3):
                await reader.refresh()
        assert [r.getMessage() for r in caplog.records] == [
            f"no engine metrics for the primary model: {metrics_url(engine.base_url)} answered HTTP 500"]
        assert caplog.records[0].levelno == logging.WARNING
        assert samples(metrics) == {("aistack_engine_metrics_available", "primary"): 0}  # no stale numbers
        assert len(engine.reads) == 4  # a failing engine is asked every round
        engine.status, engine.page = 200, IDLE
        await reader.refresh()
        latest = reader.latest()
        assert isinstance(latest, EngineLoad) and latest.prefix_cache_hit_rate is None
        assert ("aistack_engine_prefix_cache_hit_ratio", "primary") not in samples(metrics)
        assert samples(metrics)[("aistack_engine_metrics_available", "primary")] == 1


async def test_an_upstream_that_is_no_engine_is_asked_again_only_now_and_then(engine: FakeEngine) -> None:
    engine.status = 404
    metrics = GatewayMetrics()
    targets = [Target.of("primary", Upstream(base_url=engine.base_url, model="m"))]
    async with httpx.AsyncClient() as http:
        reader = EngineMetrics(http=http, metrics=metrics, targets=lambda: targets)
        for _ in range(3):
            await reader.refresh()
        assert len(engine.reads) == 1
        latest = reader.latest()
        assert isinstance(latest, MetricsUnavailable) and latest.engine_absent
        # a reload that points the role elsewhere is asked at once
        targets[0] = Target.of("primary", Upstream(base_url=f"http://127.0.0.1:{engine.port}/other/v1",
                                                   model="m"))
        await reader.refresh()
        assert len(engine.reads) == 1  # /other/metrics is not the route the fake serves: not counted
        latest = reader.latest()
        assert isinstance(latest, MetricsUnavailable) and "/other/metrics" in latest.reason


async def test_an_upstream_the_config_no_longer_names_leaves_the_gauges(engine: FakeEngine) -> None:
    metrics = GatewayMetrics()
    targets = [Target.of("primary", Upstream(base_url=engine.base_url, model="m")),
               Target.of("fallback", Upstream(base_url=engine.base_url, model="m"))]
    async with httpx.AsyncClient() as http:
        reader = EngineMetrics(http=http, metrics=metrics, targets=lambda: targets)
        await reader.refresh()
        assert {label for _, label in samples(metrics)} == {"primary", "fallback"}
        del targets[1]
        await reader.refresh()
        assert {label for _, label in samples(metrics)} == {"primary"}
        assert reader.latest("fallback") is None


def test_the_gateway_publishes_the_engines_numbers_and_its_metrics_never_wait_for_them(
        engine: FakeEngine) -> None:
    with serve_in_thread(Starlette(routes=[])) as no_engine:
        fallback = {"baseUrl": f"http://127.0.0.1:{no_engine}/v1", "model": "m"}
        config = base_config(engine.base_url, model={"fallback": fallback})
        with run_gateway(config, engine_metrics_interval_s=0.05) as gw:
            deadline = time.monotonic() + 10
            while 'aistack_engine_requests_running{upstream="primary"} 6.0' not in gw.metrics():
                assert time.monotonic() < deadline, gw.metrics()
                time.sleep(0.05)
            text = gw.metrics()
            assert 'aistack_engine_metrics_available{upstream="fallback"} 0.0' in text
            assert 'aistack_engine_kv_cache_usage_ratio{upstream="primary"} 0.033' in text
            engine.delay_s = 30  # the engine hangs: the gateway's own /metrics still answers at once
            time.sleep(1.5)
            started = time.monotonic()
            assert httpx.get(f"{gw.url}/metrics", timeout=5).status_code == 200
            assert time.monotonic() - started < 0.5
            deadline = time.monotonic() + 10
            while 'aistack_engine_metrics_available{upstream="primary"} 0.0' not in gw.metrics():
                assert time.monotonic() < deadline, gw.metrics()
                time.sleep(0.05)


def page_with(*, running: int, waiting: int, kv: float) -> str:
    labels = '{engine="0",model_name="m"}'
    return (f"vllm:num_requests_running{labels} {running}\nvllm:num_requests_waiting{labels} {waiting}\n"
            f"vllm:kv_cache_usage_perc{labels} {kv}\n")


async def test_each_replica_the_gateway_routes_to_is_read_and_summed(engine: FakeEngine) -> None:
    """Behind a Service one replica at a time would answer; the replicas listed are read each."""
    other = FakeEngine(page=page_with(running=2, waiting=5, kv=0.9))
    engine.page = page_with(running=3, waiting=1, kv=0.5)
    metrics = GatewayMetrics()
    targets = [Target.of("primary", Upstream(base_url="http://model-service:8000/v1", model="m"))]
    listed = [engine.base_url]
    handed: list[tuple[str, object, dict[str, object]]] = []
    with serve_in_thread(Starlette(routes=[Route("/metrics", other.metrics)])) as port:
        other.port = port
        listed.append(other.base_url)
        async with httpx.AsyncClient() as http:
            reader = EngineMetrics(http=http, metrics=metrics, targets=lambda: targets,
                                   replicas=lambda role: listed if role == "primary" else None,
                                   on_read=lambda role, snap, reps: handed.append((role, snap, dict(reps))))
            await reader.refresh()
            load = reader.latest()
            assert isinstance(load, EngineLoad)
            assert (load.running, load.waiting, load.kv_cache_usage) == (5, 6, pytest.approx(0.7))
            assert samples(metrics)[("aistack_engine_requests_waiting", "primary")] == 6
            per = reader.replica_reads()
            assert {url: r.waiting for url, r in per.items() if isinstance(r, EngineLoad)} == {
                engine.base_url: 1, other.base_url: 5}
            assert handed[-1][0] == "primary" and handed[-1][1] == load and len(handed[-1][2]) == 2
            other.status = 500  # one replica fails: the other's numbers stand
            await reader.refresh()
            load = reader.latest()
            assert isinstance(load, EngineLoad) and load.waiting == 1
            listed.clear()  # scaled to zero: no replica to read, and no stale numbers
            await reader.refresh()
            latest = reader.latest()
            assert isinstance(latest, MetricsUnavailable) and "no ready replica" in latest.reason
            assert samples(metrics) == {("aistack_engine_metrics_available", "primary"): 0}
