"""Streamed chat completions at a fixed concurrency, timed: what the engine benchmark
(`bench/engine.py`) and the GPU check (`bench/gpu_check.py`) measure an engine or a gateway with.

Every request streams (SSE) and asks for `stream_options.include_usage`. Time to first token is
taken when the first event carrying content arrives (vLLM's first event holds only the role, so
counting it would time the response headers, not a token); tokens are the server's own
`usage.completion_tokens`, since one SSE event may carry several tokens. A request that fails,
ends without `[DONE]`, carries an error event or no usage counts as an error with the reason, and
its time is left out of the numbers.

A closed loop: `concurrency` workers each send their next request as soon as the last one ends,
so `concurrency` requests are in flight throughout and the aggregate tokens/s is what the server
sustains at that level.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class StreamResult:
    """One streamed request: times from the moment it was sent."""

    ttft_s: float
    """Until the first event with content (the whole latency where no content came)."""
    latency_s: float
    """Until `data: [DONE]`."""
    completion_tokens: int
    error: str | None = None


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    results: list[StreamResult]
    elapsed_s: float
    """Wall-clock time from the first request sent to the last answer ended."""

    @property
    def ok(self) -> list[StreamResult]:
        return [r for r in self.results if r.error is None]

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.results if r.error is not None]

    @property
    def tokens(self) -> int:
        return sum(r.completion_tokens for r in self.ok)

    @property
    def tokens_per_s(self) -> float:
        """Aggregate: every completed request's tokens over the wall-clock time of the whole load."""
        return self.tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def ttft_ms(self, q: float) -> float:
        return percentile([r.ttft_s for r in self.ok], q) * 1e3

    def latency_ms(self, q: float) -> float:
        return percentile([r.latency_s for r in self.ok], q) * 1e3

    def stream_tokens_per_s(self) -> float:
        """The median request's own rate: its tokens over its latency (prefill included)."""
        rates = [r.completion_tokens / r.latency_s for r in self.ok if r.latency_s > 0]
        return percentile(rates, 0.5)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank (q in [0, 1]): a value that was measured, never an interpolation; nan if none."""
    if not 0 <= q <= 1:
        raise ValueError(f"percentile {q!r} is not within [0, 1]")
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def merge(loads: Sequence[LoadResult]) -> LoadResult:
    """Interleaved rounds of one target at one level, as one result (their times added)."""
    if not loads or len({load.concurrency for load in loads}) != 1:
        raise ValueError("merge needs at least one load, all at the same concurrency")
    return LoadResult(concurrency=loads[0].concurrency,
                      results=[r for load in loads for r in load.results],
                      elapsed_s=sum(load.elapsed_s for load in loads))


async def stream_chat(client: httpx.AsyncClient, url: str, body: Mapping[str, Any],
                      headers: Mapping[str, str] | None = None) -> StreamResult:
    """One streamed chat completion to `url` (the full `/v1/chat/completions` address)."""
    payload = {**body, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first: float | None = None
    tokens: int | None = None
    done = False

    def failed(reason: str) -> StreamResult:
        took = time.perf_counter() - started
        return StreamResult(ttft_s=took, latency_s=took, completion_tokens=0, error=reason)

    try:
        async with client.stream("POST", url, json=payload, headers=dict(headers or {})) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                return failed(f"HTTP {response.status_code}: {text[:200]}")
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if event.get("error"):
                    return failed(f"error event: {json.dumps(event['error'])[:200]}")
                if first is None and any((c.get("delta") or {}).get("content")
                                         for c in event.get("choices") or []):
                    first = time.perf_counter()
                if event.get("usage"):
                    tokens = int(event["usage"]["completion_tokens"])
    except (httpx.HTTPError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        return failed(f"{type(err).__name__}: {err}")
    ended = time.perf_counter()
    if not done:
        return failed("the stream ended without data: [DONE]")
    if tokens is None:
        return failed("no usage in the stream (the server ignored stream_options.include_usage)")
    ttft = (first if first is not None else ended) - started
    return StreamResult(ttft_s=ttft, latency_s=ended - started, completion_tokens=tokens)


async def run_load(url: str, *, body: Mapping[str, Any], concurrency: int, requests: int,
                   headers: Mapping[str, str] | None = None, timeout_s: float = 600) -> LoadResult:
    """`requests` streamed requests from `concurrency` workers, over one connection each."""
    if concurrency < 1 or requests < 1:
        raise ValueError(f"concurrency ({concurrency}) and requests ({requests}) must be >= 1")
    remaining = requests
    results: list[StreamResult] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), limits=limits) as client:
        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                results.append(await stream_chat(client, url, body, headers))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, requests))))
        elapsed = time.perf_counter() - started
    return LoadResult(concurrency=concurrency, results=results, elapsed_s=elapsed)
