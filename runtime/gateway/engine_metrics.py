"""What the engine behind the gateway is doing, from vLLM's own `/metrics`: requests running and
waiting, KV-cache usage, prefix-cache hits.

`EngineMetrics` reads every model upstream's `/metrics` every few seconds, publishes the numbers as
the gateway's `aistack_engine_*` gauges and keeps the latest `EngineLoad` per upstream, which the
local panel reads in-process. An upstream with replicas has each replica the gateway routes to read
(`replicas`), not whichever one its Service picks, summed into its `EngineLoad`; `on_read` hands each
round's reads on (the autoscaler's report takes the engines' queued requests and KV-cache usage from
them: `Demand.engines()`). A background poll rather than a
read on each scrape of the gateway's `/metrics`: the numbers are wanted whether or not Prometheus
scrapes, and a scrape of the gateway then never waits on an engine; each read is bounded
(`SCRAPE_TIMEOUT_S`) so a dead engine only delays the next round.

Nothing here can break the gateway. An upstream without vLLM's page (a hosted API, the in-process
transformers server: 404, a page that is not Prometheus text or has no vLLM series) is
`MetricsUnavailable(engine_absent=True)` and is asked again only every `NOT_AN_ENGINE_RECHECK_S`,
so a hosted API is not polled for a page it lacks; an engine that stops answering is asked every
round. A change of state is logged once, not every round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client import Gauge
from prometheus_client.parser import text_string_to_metric_families

from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.gateway.upstream import Target

log = logging.getLogger("aistack.gateway.engine")

SCRAPE_INTERVAL_S = 5.0
SCRAPE_TIMEOUT_S = 3.0
"""Generous: the read is off the request path, and under load (2 cores, load average 10) an engine
just ready took over 1 s to answer its first one."""
NOT_AN_ENGINE_RECHECK_S = 300.0
MAX_PAGE_BYTES = 4 * 1024 * 1024
"""vLLM 0.32's page is ~60 KB; more than this is not an engine's metrics page."""

RUNNING, WAITING = "vllm:num_requests_running", "vllm:num_requests_waiting"
KV_CACHE, PREFIX_QUERIES, PREFIX_HITS = ("vllm:kv_cache_usage_perc", "vllm:prefix_cache_queries_total",
                                         "vllm:prefix_cache_hits_total")
_WANTED = (RUNNING, WAITING, KV_CACHE, PREFIX_QUERIES.removesuffix("_total"),
           PREFIX_HITS.removesuffix("_total"))
_KEPT_LINES = tuple(prefix + name for name in _WANTED for prefix in ("", "# HELP ", "# TYPE "))
"""Only these lines reach the parser: parsing vLLM's whole page (92 families, histograms) took ~9 ms
of the event loop here, its five families ~0.5 ms."""


@dataclass(frozen=True)
class EngineLoad:
    """One read of a vLLM engine's `/metrics`, summed over its engines (data parallel)."""

    running: int
    waiting: int
    kv_cache_usage: float
    """0-1, averaged over the engines."""
    prefix_cache_queries: float
    """Prompt tokens looked up in the prefix cache since the engine started."""
    prefix_cache_hits: float
    scraped_at: float
    """`time.time()` of the read."""

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        """Hits over lookups since the engine started; None before its first lookup."""
        return self.prefix_cache_hits / self.prefix_cache_queries if self.prefix_cache_queries else None


@dataclass(frozen=True)
class MetricsUnavailable:
    reason: str
    scraped_at: float
    engine_absent: bool = False
    """The upstream answered, but not as a vLLM engine: asked again only now and then."""


EngineSnapshot = EngineLoad | MetricsUnavailable


def metrics_url(base_url: str) -> str:
    """vLLM serves `/metrics` beside `/v1`, not under it."""
    return base_url.rstrip("/").removesuffix("/v1") + "/metrics"


def parse_engine_metrics(text: str, *, scraped_at: float) -> EngineSnapshot:
    """The numbers of a vLLM `/metrics` page (Prometheus text)."""
    kept = "\n".join(line for line in text.splitlines() if line.startswith(_KEPT_LINES))
    values: dict[str, list[float]] = {}
    try:
        for family in text_string_to_metric_families(kept):
            for sample in family.samples:
                values.setdefault(sample.name, []).append(float(sample.value))
    except ValueError as err:
        return MetricsUnavailable(f"its /metrics is not valid Prometheus text ({err})", scraped_at)
    missing = [name for name in (RUNNING, WAITING, KV_CACHE) if name not in values]
    if missing:
        return MetricsUnavailable(f"its /metrics has no {', '.join(missing)}: not a vLLM engine (or not "
                                  "the pinned release)", scraped_at, engine_absent=True)
    bad = sorted(name for name, found in values.items()
                 if not all(math.isfinite(v) and v >= 0 for v in found))
    if bad or not all(v <= 1 for v in values[KV_CACHE]):
        return MetricsUnavailable(f"its /metrics has values out of range ({', '.join(bad or [KV_CACHE])})",
                                  scraped_at)
    return EngineLoad(running=round(sum(values[RUNNING])), waiting=round(sum(values[WAITING])),
                      kv_cache_usage=sum(values[KV_CACHE]) / len(values[KV_CACHE]),
                      prefix_cache_queries=sum(values.get(PREFIX_QUERIES, [0.0])),
                      prefix_cache_hits=sum(values.get(PREFIX_HITS, [0.0])), scraped_at=scraped_at)


async def scrape(http: httpx.AsyncClient, url: str, *, headers: dict[str, str] | None = None,
                 timeout_s: float = SCRAPE_TIMEOUT_S) -> EngineSnapshot:
    """One bounded read of `url`; every failure is a `MetricsUnavailable` saying why."""
    now = time.time()
    try:
        async with asyncio.timeout(timeout_s):
            async with http.stream("GET", url, headers=headers, timeout=timeout_s) as response:
                if response.status_code in (404, 405):
                    return MetricsUnavailable(f"{url} answered HTTP {response.status_code}: not a vLLM "
                                              "engine", now, engine_absent=True)
                if response.status_code != 200:
                    return MetricsUnavailable(f"{url} answered HTTP {response.status_code}", now)
                page = bytearray()
                async for chunk in response.aiter_bytes():
                    page += chunk
                    if len(page) > MAX_PAGE_BYTES:
                        return MetricsUnavailable(f"{url} sent more than {MAX_PAGE_BYTES} bytes: not a vLLM "
                                                  "metrics page", now, engine_absent=True)
    except (TimeoutError, httpx.TimeoutException):
        return MetricsUnavailable(f"{url} did not answer within {timeout_s:g} s", now)
    except httpx.HTTPError as err:
        return MetricsUnavailable(f"{url} is unreachable ({type(err).__name__})", now)
    result = parse_engine_metrics(page.decode(errors="replace"), scraped_at=now)
    if isinstance(result, MetricsUnavailable):
        return MetricsUnavailable(f"{url}: {result.reason}", now, engine_absent=result.engine_absent)
    return result


def combine(reads: Sequence[EngineSnapshot], *, scraped_at: float) -> EngineSnapshot:
    """One model's load from its replicas' reads: counts summed, KV-cache usage averaged, the
    replicas that did not answer left out (all failed: the first failure, absent if all were)."""
    loads = [r for r in reads if isinstance(r, EngineLoad)]
    if not loads:
        failed = [r for r in reads if isinstance(r, MetricsUnavailable)]
        if not failed:
            return MetricsUnavailable("the model has no ready replica", scraped_at)
        return MetricsUnavailable(failed[0].reason, scraped_at,
                                  engine_absent=all(r.engine_absent for r in failed))
    return EngineLoad(running=sum(x.running for x in loads), waiting=sum(x.waiting for x in loads),
                      kv_cache_usage=sum(x.kv_cache_usage for x in loads) / len(loads),
                      prefix_cache_queries=sum(x.prefix_cache_queries for x in loads),
                      prefix_cache_hits=sum(x.prefix_cache_hits for x in loads), scraped_at=scraped_at)


@dataclass
class _Watch:
    url: str
    snapshot: EngineSnapshot | None = None
    replicas: dict[str, EngineSnapshot] = field(default_factory=dict)
    """Each replica's read, by its base URL (an upstream with replicas)."""


Replicas = Callable[[str], Sequence[str] | None]
"""The base URLs of the replicas the gateway routes a role's requests to now; None: the upstream
has no replicas of its own (read its URL)."""
OnRead = Callable[[str, EngineSnapshot, Mapping[str, EngineSnapshot]], None]


class EngineMetrics:
    """The latest read of each upstream (`latest(role)`), kept in the gateway's gauges.

    `targets` (and `replicas`) are asked every round, so a config reload's new upstreams and a
    replica that came or went are followed at once.
    """

    def __init__(self, *, http: httpx.AsyncClient, metrics: GatewayMetrics,
                 targets: Callable[[], Sequence[Target]], interval_s: float = SCRAPE_INTERVAL_S,
                 timeout_s: float = SCRAPE_TIMEOUT_S, replicas: Replicas = lambda role: None,
                 on_read: OnRead | None = None) -> None:
        self.http = http
        self.metrics = metrics
        self.targets = targets
        self.replicas = replicas
        self.on_read = on_read
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._watches: dict[str, _Watch] = {}
        self._lock = asyncio.Lock()
        self._first_round = asyncio.Event()

    def latest(self, role: str = "primary") -> EngineSnapshot | None:
        """The last read of the `role` upstream; None before the first."""
        watch = self._watches.get(role)
        return watch.snapshot if watch is not None else None

    def replica_reads(self, role: str = "primary") -> dict[str, EngineSnapshot]:
        """The last read of each replica of the `role` upstream, by base URL ({} without replicas)."""
        watch = self._watches.get(role)
        return dict(watch.replicas) if watch is not None else {}

    async def first_round(self) -> None:
        """Return once every upstream has been read (or found due later) at least once."""
        await self._first_round.wait()

    async def run(self) -> None:
        """Read every upstream every `interval_s` until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - a bug here must not end the reads, nor reach a request
                log.exception("reading the engine metrics failed")
            await asyncio.sleep(self.interval_s)

    async def refresh(self) -> None:
        """One read of every upstream that is due, concurrently."""
        async with self._lock:
            targets = {t.role: t for t in self.targets()}
            for role in self._watches.keys() - targets.keys():
                del self._watches[role]
                self._remove(role, self._value_gauges() + (self.metrics.engine_available,))
            due = [t for t in targets.values() if self._due(t)]
            await asyncio.gather(*(self._read(t) for t in due))
        self._first_round.set()

    def _due(self, target: Target) -> bool:
        url = metrics_url(target.upstream.base_url)
        watch = self._watches.get(target.role)
        if watch is None or watch.url != url:
            self._watches[target.role] = _Watch(url)
            return True
        last = watch.snapshot
        return not (isinstance(last, MetricsUnavailable) and last.engine_absent
                    and time.time() - last.scraped_at < NOT_AN_ENGINE_RECHECK_S)

    async def _read(self, target: Target) -> None:
        watch = self._watches[target.role]
        auth = {k: v for k, v in target.headers.items() if k == "Authorization"}
        listed = self.replicas(target.role)
        if listed is None:
            snapshot = await scrape(self.http, watch.url, headers=auth, timeout_s=self.timeout_s)
        else:
            reads = await asyncio.gather(*(scrape(self.http, metrics_url(url), headers=auth,
                                                  timeout_s=self.timeout_s) for url in listed))
            watch.replicas = dict(zip(listed, reads, strict=True))
            snapshot = combine(reads, scraped_at=time.time())
        previous, watch.snapshot = watch.snapshot, snapshot
        role, m = target.role, self.metrics
        if self.on_read is not None:
            try:
                self.on_read(role, snapshot, watch.replicas)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the reads
                log.exception("handing on the engine metrics failed")
        if isinstance(snapshot, EngineLoad):
            if not isinstance(previous, EngineLoad):
                log.info("reading the %s model's engine metrics from %s", role, watch.url)
            m.engine_available.labels(role).set(1)
            m.engine_running.labels(role).set(snapshot.running)
            m.engine_waiting.labels(role).set(snapshot.waiting)
            m.engine_kv_cache.labels(role).set(snapshot.kv_cache_usage)
            rate = snapshot.prefix_cache_hit_rate
            if rate is None:
                self._remove(role, (m.engine_prefix_hits,))
            else:
                m.engine_prefix_hits.labels(role).set(rate)
            return
        if not isinstance(previous, MetricsUnavailable) or previous.reason != snapshot.reason:
            level = logging.INFO if snapshot.engine_absent else logging.WARNING
            log.log(level, "no engine metrics for the %s model: %s", role, snapshot.reason)
        self._remove(role, self._value_gauges())  # no stale numbers while the engine is unread
        m.engine_available.labels(role).set(0)

    def _value_gauges(self) -> tuple[Gauge, ...]:
        m = self.metrics
        return m.engine_running, m.engine_waiting, m.engine_kv_cache, m.engine_prefix_hits

    @staticmethod
    def _remove(role: str, gauges: tuple[Gauge, ...]) -> None:
        for gauge in gauges:
            with contextlib.suppress(KeyError):
                gauge.remove(role)
