"""The gateway's `aistack_engine_*` gauges in front of the real vLLM engine (conftest's
`engine_server`): they show requests running while the engine generates, a KV-cache share within
0-1, and the prefix-cache hit ratio the engine's own /metrics gives."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aistack.runtime.engine.server import EngineServer
from aistack.runtime.local.offline_model import OFFLINE_MODEL_NAME
from aistack.testing.gateway import Gateway, base_config, run_gateway

pytestmark = pytest.mark.slow
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


@pytest.fixture(scope="module")
def gateway(engine_server: EngineServer) -> Iterator[Gateway]:
    config = base_config(f"{engine_server.base_url}/v1",
                         model={"primary": {"model": OFFLINE_MODEL_NAME, "timeoutSeconds": 120}})
    with run_gateway(config, engine_metrics_interval_s=0.2) as gw:
        yield gw


def gauges(gw: Gateway) -> dict[str, float]:
    """The gateway's engine gauges of the primary upstream, by name."""
    return {s.name: s.value for family in text_string_to_metric_families(gw.metrics())
            for s in family.samples
            if s.name.startswith("aistack_engine_") and s.labels == {"upstream": "primary"}}


def engine_prefix_cache(server: EngineServer) -> tuple[float, float]:
    """(hits, queries) as the engine's own /metrics gives them."""
    page = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    values = {s.name: s.value for family in text_string_to_metric_families(page) for s in family.samples}
    return values["vllm:prefix_cache_hits_total"], values["vllm:prefix_cache_queries_total"]


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_the_gauges_show_the_requests_the_engine_runs(gateway: Gateway) -> None:
    wait_for(lambda: gauges(gateway).get("aistack_engine_metrics_available") == 1, 10, "no engine metrics")
    seen: list[dict[str, float]] = []

    def busy() -> bool:
        seen.append(gauges(gateway))
        return seen[-1].get("aistack_engine_requests_running", 0) >= 1

    client = gateway.client(timeout=300)
    with ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(client.chat.completions.create, model="demo-model", messages=STORY,
                               max_tokens=150, temperature=0) for _ in range(4)]
        wait_for(busy, 120, "the gauges never showed a running request")
        assert 0 < seen[-1]["aistack_engine_kv_cache_usage_ratio"] <= 1
        assert all(a.result().choices[0].message.content for a in answers)
    wait_for(lambda: gauges(gateway).get("aistack_engine_requests_running") == 0, 10, "still running")
    idle = gauges(gateway)
    assert idle["aistack_engine_requests_waiting"] == 0
    assert 0 <= idle["aistack_engine_kv_cache_usage_ratio"] <= 1


def test_the_hit_ratio_is_the_engines_and_grows_with_a_repeated_prompt(gateway: Gateway,
                                                                       engine_server: EngineServer) -> None:
    # a prefix of its own (the CPU cache works in blocks of 128 tokens), long enough to fill blocks
    prefix = f"Session {uuid.uuid4()}. " + "The bakery opens at seven and closes at noon. " * 40
    messages = [{"role": "system", "content": prefix}, {"role": "user", "content": "When does it open?"}]
    client = gateway.client(timeout=300)
    client.chat.completions.create(model="demo-model", messages=messages, max_tokens=4, temperature=0)
    hits_before, _ = engine_prefix_cache(engine_server)
    client.chat.completions.create(model="demo-model", messages=messages, max_tokens=4, temperature=0)
    hits, queries = engine_prefix_cache(engine_server)
    assert hits - hits_before >= 128, "the repeated prompt found none of its blocks in the cache"
    ratio = pytest.approx(hits / queries)
    wait_for(lambda: gauges(gateway).get("aistack_engine_prefix_cache_hit_ratio") == ratio, 10,
             f"the gateway's ratio is not the engine's {hits}/{queries}: {gauges(gateway)}")
