"""The model client: any OpenAI-compatible upstream (vLLM, a hosted API) over pooled async HTTP.

Retries happen only before the first byte of an answer reaches the client (a retried stream
after that would send text twice), only for what another try can fix (`aistack.runtime.core.retry`:
a refused or dropped connection, 429, 502-504), with jittered backoff that honours
`Retry-After`, and only while the request's budget can hold another try as slow as the failed
one (a timeout or 504 after half the budget is not retried). Then the fallback upstream, when the
spec declares one, gets the same request; 400 and the like go to no one else. Each upstream has
a circuit breaker: after 5 failures in a row it gets no traffic (straight to the fallback, or a
quick 503) until one request probes it. Streams are passed through event by event.

An upstream with replicas (`Upstream.replicas`: a headless Service's DNS name, or fixed URLs)
sends each request to the replica its `Router` picks; a replica that refuses, drops or fails a
request before the first byte sits out a cool-down and the request goes straight on to another
replica (no backoff, no breaker count: the model is not down while a replica answers).

A model that may be at zero replicas (`ModelScaling.hold_seconds`) has a request that finds none
held until a replica accepts connections, up to the hold (`Demand` counts it, and the operator's
autoscaler hears of it at once); then a 503 with Retry-After.

It uses aiohttp, not httpx: at 64 concurrent requests httpx's pool cost 3.7-6.7 ms of CPU per
request against aiohttp's 0.3 ms on the same machine, and this is the gateway's hot path.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.http_exceptions import LineTooLong
from yarl import URL

from aistack.api.gateway_config import Replicas, Upstream
from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.core.retry import RETRY_STATUSES, Backoff, CircuitBreaker, retry_after_s
from aistack.runtime.gateway import jsonio
from aistack.runtime.gateway.canary import VersionWindow
from aistack.runtime.gateway.demand import Demand
from aistack.runtime.gateway.errors import GatewayError
from aistack.runtime.gateway.routing import Router, prompt_key

HOLD_POLL_S = 0.25
"""How often a held request looks for a replica (discovery itself resolves at most every second)."""
HOLD_MARGIN_S = 0.25
HOLD_RETRY_AFTER_S = 30.0
ADAPTERS_READ_S = 2.0
"""How often a pool reads which LoRA adapters each replica holds (its `/models`), in the background."""
"""What a request that waited out the hold is told to wait before it tries again."""
MAX_EVENT_BYTES = 2**19
"""The longest line of an upstream stream the gateway reads (aiohttp's own limit: 512 KiB)."""


class UpstreamError(GatewayError):
    """A model upstream failed.

    `retryable`: another try at the same upstream may succeed. `fallback`: the other upstream
    may (False when the request itself was refused). `unhealthy`: counts against the upstream's
    circuit breaker. `slow`: the failure took a timeout's length (a retry must fit the budget).
    """

    def __init__(self, status: int, message: str, *, code: str, retryable: bool, fallback: bool = True,
                 unhealthy: bool = False, slow: bool = False, retry_after: float | None = None) -> None:
        super().__init__(status, message, code=code)
        self.retryable = retryable
        self.fallback = fallback
        self.unhealthy = unhealthy
        self.slow = slow
        self.retry_after = retry_after


@dataclass(frozen=True)
class Target:
    """One upstream with its resolved credentials (kept in memory only)."""

    role: str
    upstream: Upstream
    headers: dict[str, str]

    @classmethod
    def of(cls, role: str, upstream: Upstream) -> Target:
        headers = {"Content-Type": "application/json"}
        if upstream.api_key_env:
            key = os.environ.get(upstream.api_key_env)
            if not key:
                raise ValueError(f"the {role} model's API key env var {upstream.api_key_env} is unset or "
                                 "empty; set it (the operator fills it from the Secret)")
            headers["Authorization"] = f"Bearer {key}"
        return cls(role=role, upstream=upstream, headers=headers)

    def timeout(self, *, stream: bool, budget_s: float | None = None) -> aiohttp.ClientTimeout:
        """The whole call for JSON answers (within what is left of the request's budget); for
        streams, the wait for each next piece."""
        t = self.upstream.timeout_seconds
        if stream:
            return aiohttp.ClientTimeout(total=None, connect=min(5.0, t), sock_read=t)
        total = t if budget_s is None else max(0.001, min(t, budget_s))
        return aiohttp.ClientTimeout(total=total, connect=min(5.0, total))


class HttpPool:
    """One aiohttp session per event loop, created on first use (sessions are loop-bound)."""

    def __init__(self, *, limit: int = 1000) -> None:
        self.limit = limit
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.limit, limit_per_host=0, keepalive_timeout=30,
                                             enable_cleanup_closed=True)
            # read_bufsize sets the longest line a stream may send: twice the buffer.
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True, trust_env=False,
                                                  read_bufsize=MAX_EVENT_BYTES // 2)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


class UpstreamStream:
    """An open SSE stream whose first event already arrived; iterate it for parsed chunks."""

    def __init__(self, response: aiohttp.ClientResponse, lines: AsyncIterator[bytes], first: dict[str, Any],
                 target: Target) -> None:
        self.response = response
        self._lines = lines
        self._first: dict[str, Any] | None = first
        self.target = target
        self.on_close: Callable[[], None] | None = None
        """Called once when the stream ends or is closed (the replica's request is done)."""

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        try:
            if self._first is not None:
                first, self._first = self._first, None
                yield first
            while True:
                event = await _next_event(self._lines, self.target)
                if event is None:
                    return
                yield event
        finally:
            self._close()

    async def aclose(self) -> None:
        self._close()

    def _close(self) -> None:
        self.response.release()
        done, self.on_close = self.on_close, None
        if done is not None:
            done()


class ReplicaPool:
    """One upstream's replicas: its `Router`, kept up to date from a headless Service's DNS records
    (resolved again at most every `refresh_seconds`, on the request path) or fixed URLs."""

    def __init__(self, upstream: Upstream, replicas: Replicas,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = replicas
        self.path = "/" + upstream.base_url.split("://", 1)[-1].partition("/")[2].strip("/")
        self.router = Router(replicas.urls, policy=replicas.policy, clock=clock)
        self.clock = clock
        self._resolved_at = -1e9
        self._resolving: asyncio.Task[None] | None = None
        self.adapters: dict[str, frozenset[str]] = {}
        """The LoRA adapters each replica serves, as its `/models` said at the last read."""
        self._adapters_read_at = -1e9
        self._reading: asyncio.Task[None] | None = None

    def holders(self, adapter: str) -> set[str]:
        """The listed replicas that hold `adapter` (each replica's adapter agent loads them all; one
        that is still pulling or loading it does not hold it yet)."""
        return {r for r, names in self.adapters.items() if adapter in names and r in self.router.in_flight}

    async def read_adapters(self, http: HttpPool) -> None:
        """Read each replica's adapters in the background, at most every `ADAPTERS_READ_S`; the first
        time, wait for the answer (up to a couple of seconds) rather than route blind."""
        if self.clock() - self._adapters_read_at >= ADAPTERS_READ_S and (
                self._reading is None or self._reading.done()):
            self._adapters_read_at = self.clock()
            self._reading = asyncio.ensure_future(self._read_adapters(http))
        if not self.adapters and self._reading is not None:
            await asyncio.shield(self._reading)

    async def _read_adapters(self, http: HttpPool) -> None:
        async def one(replica: str) -> tuple[str, frozenset[str] | None]:
            try:
                async with http.session().get(f"{replica}/models",
                                              timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    body = await resp.json() if resp.status == 200 else None
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return replica, None
            if not isinstance(body, dict):
                return replica, None
            return replica, frozenset(str(m.get("id")) for m in body.get("data") or []
                                      if isinstance(m, dict) and m.get("parent"))
        read = await asyncio.gather(*(one(r) for r in self.router.replicas))
        self.adapters = {replica: names for replica, names in read if names is not None}

    def list_urls(self, urls: Sequence[str]) -> None:
        """Fixed replicas listed anew, as discovery would list them: `aistack up` lists the engines
        that serve as its autoscaler starts and stops them (none: a request is held)."""
        self.spec = self.spec.model_copy(update={"urls": list(urls)})
        self.router.update(self.spec.urls)

    async def refresh(self) -> None:
        if self.spec.dns_name is None:
            self.router.update(self.spec.urls)  # a replica out for its cool-down comes back
            return
        if self.clock() - self._resolved_at < self.spec.refresh_seconds:
            return
        if self._resolving is None or self._resolving.done():
            self._resolving = asyncio.ensure_future(self._resolve())
        if not self.router.replicas:
            await asyncio.shield(self._resolving)  # nothing to route to yet: wait for the answer

    async def _resolve(self) -> None:
        name = self.spec.dns_name
        assert name is not None
        try:
            records = await asyncio.get_running_loop().getaddrinfo(
                name, self.spec.port, family=socket.AF_INET, type=socket.SOCK_STREAM)
        except OSError:
            records = []  # no ready replica (NXDOMAIN for an empty headless Service)
        self._resolved_at = self.clock()
        self.router.update(f"http://{r[4][0]}:{self.spec.port}{self.path}" for r in records)


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The body's lines, then its error. aiohttp's reader raises a broken connection's error ahead of
    the bytes it already holds, so the events an upstream sent just before a reset were lost whenever
    the relay read them after the reset was seen (a loaded gateway: the flaky reset test); they are
    handed over first here. A cut last line is not a line: only whole ones are."""
    try:
        async for line in content:
            yield line
    except aiohttp.ClientPayloadError:
        received = content._read_nowait(-1)  # private: every public reader raises the error first
        for line in received.splitlines(keepends=True):
            if line.endswith(b"\n"):
                yield line
        raise


async def _next_event(lines: AsyncIterator[bytes], target: Target) -> dict[str, Any] | None:
    """The next `data:` event as a dict; None at `[DONE]` or a clean end of stream."""
    try:
        async for line in lines:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                return None
            try:
                event = jsonio.loads(data)
            except ValueError:
                raise UpstreamError(502, f"the {target.role} model sent a malformed stream event",
                                    code="upstream_error", retryable=False) from None
            if isinstance(event, dict) and "error" in event:
                message = (event["error"] or {}).get("message", "error") if isinstance(event["error"],
                                                                                       dict) else str(
                                                                                           event["error"])
                raise UpstreamError(502, f"the {target.role} model failed mid-stream: {message}",
                                    code="upstream_error", retryable=False)
            return event
    except TimeoutError:
        raise UpstreamError(504, f"the {target.role} model stopped sending within "
                            f"{target.upstream.timeout_seconds}s",
                            code="upstream_timeout", retryable=False, unhealthy=True, slow=True) from None
    except aiohttp.ClientError as err:
        raise UpstreamError(502, f"the {target.role} model's connection broke mid-stream "
                            f"({type(err).__name__})",
                            code="upstream_error", retryable=True, unhealthy=True) from None
    except LineTooLong:  # a BadHttpMessage, not a ClientError
        raise UpstreamError(502, f"the {target.role} model sent a stream event longer than "
                            f"{MAX_EVENT_BYTES // 1024} KiB, the most the gateway reads",
                            code="upstream_event_too_large", retryable=False) from None
    return None


class ModelClient:
    """Chat completions against the primary upstream, then the fallback."""

    def __init__(self, *, primary: Upstream, fallback: Upstream | None, http: HttpPool,
                 metrics: GatewayMetrics, retries: int = 2, backoff: Backoff | None = None,
                 breaker: Callable[[], CircuitBreaker] = CircuitBreaker,
                 demand: Demand | None = None, version: str | None = None,
                 window: VersionWindow | None = None) -> None:
        """`demand`: the self-hosted model autoscales; count its requests, and hold them while it has
        no ready replica when `demand.scaling.hold_seconds` says so. `version`: this client is one
        version of a canary split (`stable` or `canary`): each call is counted in the per-version
        series and in `window`, the analysis window; None (no canary): nothing is counted."""
        self.targets = [Target.of("primary", primary)] + ([Target.of("fallback", fallback)] if fallback
                                                          else [])
        self.http = http
        self.metrics = metrics
        self.retries = retries
        self.backoff = backoff or Backoff()
        self.breakers = {t.role: breaker() for t in self.targets}
        self.pools = {t.role: ReplicaPool(t.upstream, t.upstream.replicas) for t in self.targets
                      if t.upstream.replicas is not None}
        for t in self.targets:
            metrics.upstream_circuit_open.labels(t.role).set(0)
        self.demand = demand
        self.version = version
        self.window = window
        if version is not None:
            self._calls = metrics.version_requests.labels(version)
            self._failures = metrics.version_errors.labels(version)
            self._latency = metrics.version_latency.labels(version)

    async def complete(self, payload: dict[str, Any], *,
                       deadline: float | None = None) -> tuple[dict[str, Any], Target]:
        """A non-streamed completion and the target that answered; `deadline` (`time.perf_counter()`
        seconds) is the end of the request's budget."""
        if self.version is None:
            return await self._complete(payload, deadline=deadline)
        started = time.perf_counter()
        try:
            response, target = await self._complete(payload, deadline=deadline)
        except UpstreamError as err:
            self._observe(started, ok=err.status < 500 and err.status != 429)
            raise
        self._observe(started, ok=target.role == "primary")
        return response, target

    def _observe(self, started: float, *, ok: bool) -> None:
        """One call of this version: a failure is a 5xx or 429, or the fallback answering for it."""
        assert self.version is not None
        seconds = time.perf_counter() - started
        self._calls.inc()
        if not ok:
            self._failures.inc()
        self._latency.observe(seconds)
        if self.window is not None:
            self.window.observe(self.version, seconds, ok=ok)

    async def _complete(self, payload: dict[str, Any], *,
                        deadline: float | None = None) -> tuple[dict[str, Any], Target]:
        if self.demand is None:
            return await self._with_retries(payload, stream=False, deadline=deadline)
        self.demand.started()
        try:
            return await self._with_retries(payload, stream=False, deadline=deadline)
        finally:
            self.demand.finished()

    async def stream(self, payload: dict[str, Any], *, deadline: float | None = None) -> UpstreamStream:
        """Open a stream; returns once the first event arrived (retries and fallback before that)."""
        if self.version is None:
            return await self._stream(payload, deadline=deadline)
        started = time.perf_counter()
        try:
            result = await self._stream(payload, deadline=deadline)
        except UpstreamError as err:
            self._observe(started, ok=err.status < 500 and err.status != 429)
            raise
        self._observe(started, ok=result.target.role == "primary")
        return result

    async def _stream(self, payload: dict[str, Any], *, deadline: float | None = None) -> UpstreamStream:
        demand = self.demand
        if demand is None:
            result, _ = await self._with_retries({**payload, "stream": True}, stream=True, deadline=deadline)
            return result
        demand.started()
        try:
            result, _ = await self._with_retries({**payload, "stream": True}, stream=True, deadline=deadline)
        except BaseException:
            demand.finished()
            raise
        routed = result.on_close

        def closed() -> None:
            if routed is not None:
                routed()
            demand.finished()

        result.on_close = closed  # in flight until the stream ends
        return result

    async def _hold(self, pool: ReplicaPool, key: bytes, *, deadline: float | None) -> str | None:
        """Wait for a replica of a model that has none (scaled to zero, starting) for up to its
        `holdSeconds` (and within the request's budget); the replica to use, or None."""
        assert self.demand is not None and self.demand.scaling.hold_seconds is not None
        until = time.perf_counter() + self.demand.scaling.hold_seconds
        if deadline is not None:
            until = min(until, deadline - HOLD_MARGIN_S)  # a 503 to retry, not the budget's 504
        self.demand.hold(+1)
        try:
            while time.perf_counter() < until:
                await asyncio.sleep(min(HOLD_POLL_S, max(0.0, until - time.perf_counter())))
                await pool.refresh()
                base = pool.router.pick(key)
                if base is not None and await _accepts(base):
                    return base
                if base is not None:
                    pool.router.failed(base)  # not listening yet: out for its cool-down
        finally:
            self.demand.hold(-1)
        return None

    async def _with_retries(self, payload: dict[str, Any], *, stream: bool,
                            deadline: float | None) -> tuple[Any, Target]:
        last: UpstreamError | None = None
        began = time.perf_counter()
        adapter = _adapter(self.targets[0], payload)
        for target in self.targets:
            if adapter is not None and adapter not in (target.upstream.adapters or ()):
                continue  # a fallback API does not serve the base's adapters
            breaker = self.breakers[target.role]
            if not breaker.allow():
                self.metrics.upstream_errors.labels(target.role, "circuit_open").inc()
                last = last or UpstreamError(
                    503, f"the {target.role} model failed {breaker.failures} times in a row, so the gateway "
                         f"sends it no requests for now; retry in {breaker.retry_in_s():.0f}s",
                    code="upstream_unavailable", retryable=False)
                continue
            attempt = 0
            pool = self.pools.get(target.role)
            key = prompt_key(payload.get("messages") or [{"content": payload.get("prompt")}]) \
                if pool and pool.spec.policy == "prefix" else b""
            if adapter is not None and key:
                key = adapter.encode() + b"\0" + key  # an engine's prefix cache is per adapter
            tried: list[str] = []
            while True:
                started = time.perf_counter()
                budget = None if deadline is None else deadline - started
                try:
                    result = await self._attempt(target, payload, stream=stream, budget=budget, pool=pool,
                                                 key=key, tried=tried)
                except UpstreamError as err:
                    last = err
                    if pool is not None and err.unhealthy and err.fallback and tried and \
                            pool.router.pick(key, exclude=tried) is not None:
                        self.metrics.upstream_errors.labels(target.role, err.code or "error").inc()
                        continue  # another replica, at once: this one sits out its cool-down
                    self._failed(target, err)
                    if not err.fallback:
                        raise
                    wait = self._retry_wait(err, attempt, began=began, started=started, deadline=deadline)
                    if wait is None or not breaker.allow():
                        break
                    await asyncio.sleep(wait)
                    attempt += 1
                    continue
                self._succeeded(target)
                return result, target
            if deadline is not None and time.perf_counter() >= deadline:
                break
        assert last is not None
        raise last

    async def _attempt(self, target: Target, payload: dict[str, Any], *, stream: bool, budget: float | None,
                       pool: ReplicaPool | None, key: bytes, tried: list[str]) -> Any:
        """One call, to the replica the router picks where the upstream has replicas. A model that
        may be at zero replicas (`holdSeconds`) has its request held while it has none: none listed
        by discovery, or the one listed refuses connections (an engine not started yet)."""
        if pool is None:
            if stream:
                return await self._open_stream(target, payload)
            return await self._post(target, payload, budget)
        await pool.refresh()
        among: set[str] | None = None
        if (adapter := _adapter(target, payload)) is not None:
            await pool.read_adapters(self.http)
            among = pool.holders(adapter) or None  # none known to hold it: any (it may have loaded since)
        base = pool.router.pick(key, exclude=tried, among=among)
        holds = self.demand is not None and self.demand.scaling.hold_seconds is not None \
            and target.role == "primary"
        if base is None and holds and not tried and not pool.router.replicas:
            base = await self._held(pool, key, budget)
        if base is None:
            raise UpstreamError(503, f"the {target.role} model has no ready replica"
                                     f"{f' left ({len(tried)} failed)' if tried else ''}; retry later",
                                code="upstream_unavailable", retryable=True, unhealthy=True)
        try:
            return await self._call(target, payload, stream=stream, budget=budget, pool=pool, base=base,
                                    tried=tried)
        except UpstreamError as err:
            if not (holds and err.status == 503 and pool.router.pick(key, exclude=tried) is None):
                raise
        # the only replica refused the connection: the model is starting (or stopped, locally)
        base = await self._held(pool, key, budget)
        if base in tried:
            tried.remove(base)
        return await self._call(target, payload, stream=stream, budget=budget, pool=pool, base=base,
                                tried=tried)

    async def _held(self, pool: ReplicaPool, key: bytes, budget: float | None) -> str:
        """A replica once one accepts connections, within the hold; else the 503 to retry later."""
        deadline = None if budget is None else time.perf_counter() + budget
        base = await self._hold(pool, key, deadline=deadline)
        if base is None:
            raise UpstreamError(503, "the model is scaled to zero and did not start within the wait for it; "
                                     "retry later", code="model_starting", retryable=False,
                                retry_after=HOLD_RETRY_AFTER_S)
        return base

    async def _call(self, target: Target, payload: dict[str, Any], *, stream: bool, budget: float | None,
                    pool: ReplicaPool, base: str, tried: list[str]) -> Any:
        pool.router.started(base)
        result: UpstreamStream | dict[str, Any]
        try:
            result = await (self._open_stream(target, payload, base) if stream
                            else self._post(target, payload, budget, base))
        except UpstreamError as err:
            pool.router.finished(base)
            if err.unhealthy:
                pool.router.failed(base)
                tried.append(base)
            raise
        except BaseException:
            pool.router.finished(base)
            raise
        if isinstance(result, UpstreamStream):
            result.on_close = lambda: pool.router.finished(base)
        else:
            pool.router.finished(base)
        return result

    def _retry_wait(self, err: UpstreamError, attempt: int, *, began: float, started: float,
                    deadline: float | None) -> float | None:
        """Seconds to wait before trying the same upstream again (the try began at `started`, the
        model call at `began`); None: do not."""
        if not err.retryable or attempt >= self.retries:
            return None
        wait = self.backoff.wait_s(attempt, retry_after=err.retry_after)
        if wait is None or deadline is None:
            return wait
        now = time.perf_counter()
        # Another try must fit in what is left as slow as this one was; and a slow failure (a
        # timeout, a 504) that came after half the budget is not retried: the client would most
        # likely wait out the rest of its budget for the same answer.
        if deadline - now - wait <= now - started:
            return None
        if err.slow and now - began > (deadline - began) / 2:
            return None
        return wait

    def _failed(self, target: Target, err: UpstreamError) -> None:
        self.metrics.upstream_errors.labels(target.role, err.code or "error").inc()
        if err.unhealthy:
            breaker = self.breakers[target.role]
            breaker.failure()
            self.metrics.upstream_circuit_open.labels(target.role).set(breaker.state != "closed")

    def _succeeded(self, target: Target) -> None:
        breaker = self.breakers[target.role]
        if breaker.state != "closed" or breaker.failures:
            breaker.success()
            self.metrics.upstream_circuit_open.labels(target.role).set(0)
        if target.role == "fallback":
            self.metrics.fallbacks.inc()

    def _body(self, target: Target, payload: dict[str, Any]) -> bytes:
        return jsonio.dumps({**payload, "model": _adapter(target, payload) or target.upstream.model})

    async def _post(self, target: Target, payload: dict[str, Any], budget_s: float | None,
                    base: str | None = None) -> dict[str, Any]:
        path = endpoint(payload)
        url = f"{base or target.upstream.base_url}{path}"
        try:
            timeout = target.timeout(stream=False, budget_s=budget_s)
            async with self.http.session().post(url, data=self._body(target, payload), headers=target.headers,
                                                timeout=timeout) as resp:
                content = await resp.read()
                status = resp.status
                headers = resp.headers
        except TimeoutError:
            raise _timeout(target) from None
        except aiohttp.ClientConnectorError as err:
            raise _unreachable(target, err) from None
        except aiohttp.ClientError as err:
            raise _broken(target, err) from None
        if status != 200:
            raise _status_error(target, status, content, headers.get("Retry-After"), path=path,
                                adapter=_adapter(target, payload))
        try:
            return jsonio.loads(content)
        except ValueError:
            raise UpstreamError(502, f"the {target.role} model answered with a body that is not JSON",
                                code="upstream_error", retryable=False) from None

    async def _open_stream(self, target: Target, payload: dict[str, Any],
                           base: str | None = None) -> UpstreamStream:
        path = endpoint(payload)
        url = f"{base or target.upstream.base_url}{path}"
        try:
            resp = await self.http.session().post(url, data=self._body(target, payload),
                                                  headers=target.headers,
                                                  timeout=target.timeout(stream=True))
        except TimeoutError:
            raise _timeout(target) from None
        except aiohttp.ClientConnectorError as err:
            raise _unreachable(target, err) from None
        except aiohttp.ClientError as err:
            raise _broken(target, err) from None
        try:
            if resp.status != 200:
                try:
                    content = await resp.read()
                except (aiohttp.ClientError, TimeoutError):
                    content = b""
                raise _status_error(target, resp.status, content, resp.headers.get("Retry-After"), path=path,
                                    adapter=_adapter(target, payload))
            lines = _lines(resp.content)
            first = await _next_event(lines, target)
            if first is None:
                raise UpstreamError(502, f"the {target.role} model ended the stream without an event",
                                    code="upstream_error", retryable=False, unhealthy=True)
        except BaseException:
            resp.release()
            raise
        return UpstreamStream(resp, lines, first, target)

    async def models_reachable(self, timeout_s: float = 2.0) -> bool:
        """Readiness: the primary (or else the fallback) answers `GET /models`; a model that may be
        at zero replicas counts as reachable (the gateway must stay in its Service to wake it)."""
        if self.demand is not None and self.demand.scaling.hold_seconds is not None:
            return True
        for target in self.targets:
            try:
                async with self.http.session().get(f"{target.upstream.base_url}/models",
                                                   headers=target.headers,
                                                   timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                    if resp.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                continue
        return False


async def _accepts(base: str) -> bool:
    """Whether the replica at `base` accepts a connection (a starting engine refuses)."""
    url = URL(base)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(url.host, url.port), HOLD_POLL_S * 4)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def _timeout(target: Target) -> UpstreamError:
    """No answer in time: the fallback may help, a second wait as long at the same upstream not."""
    return UpstreamError(504, f"the {target.role} model did not answer within "
                         f"{target.upstream.timeout_seconds}s",
                         code="upstream_timeout", retryable=False, unhealthy=True, slow=True)


def _unreachable(target: Target, err: Exception) -> UpstreamError:
    return UpstreamError(503, f"the {target.role} model is unreachable ({type(err).__name__}); retry later",
                         code="upstream_unavailable", retryable=True, unhealthy=True)


def _broken(target: Target, err: Exception) -> UpstreamError:
    """The connection dropped before an answer (often a pooled connection the server had closed)."""
    return UpstreamError(502, f"the {target.role} model's connection broke ({type(err).__name__})",
                         code="upstream_error", retryable=True, unhealthy=True)


def _adapter(target: Target, payload: dict[str, Any]) -> str | None:
    """The LoRA adapter a request names (`model`), where `target` serves it."""
    name = payload.get("model")
    return name if isinstance(name, str) and name in (target.upstream.adapters or ()) else None


def endpoint(payload: dict[str, Any]) -> str:
    """The upstream path a request goes to: a body with a `prompt` and no `messages` is a legacy
    text completion (`/completions`), every other one a chat completion."""
    return "/completions" if "prompt" in payload and "messages" not in payload else "/chat/completions"


def _status_error(target: Target, status: int, content: bytes,
                  retry_after: str | None = None, *, path: str = "/chat/completions",
                  adapter: str | None = None) -> UpstreamError:
    try:
        detail = jsonio.loads(content)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = content[:200].decode(errors="replace")
    if status == 404 and adapter is not None:  # listed in the spec, not (yet) in this engine
        return UpstreamError(503, f"the adapter `{adapter}` is not loaded in the model's engine: it is still "
                                  "being pulled or loaded, or it failed (status.model.adapters, or `aistack "
                                  "up`'s adapters row, says which); retry later", code="adapter_unavailable",
                             retryable=False, fallback=False)
    if status in (404, 405) and path != "/chat/completions" and "model" not in detail.lower():
        return UpstreamError(400, f"the {target.role} model's provider does not serve /v1{path} (HTTP "
                                  f"{status}); use /v1/chat/completions", code="unsupported_endpoint",
                             retryable=False)
    retryable = status in RETRY_STATUSES
    if status == 429:
        return UpstreamError(429, f"the {target.role} model is rate limited: {detail}; retry later",
                             code="upstream_rate_limited", retryable=True,
                             retry_after=retry_after_s(retry_after))
    if status in (401, 403):
        return UpstreamError(502, f"the {target.role} model refused the gateway's credentials "
                                  f"(HTTP {status}); check the API key Secret", code="upstream_auth",
                             retryable=False)
    if status == 400:
        return UpstreamError(400, f"the model rejected the request: {detail}", code="upstream_bad_request",
                             retryable=False, fallback=False)
    if 400 <= status < 500 and status != 404:  # about this request: no other upstream takes it either
        return UpstreamError(502, f"the model rejected the request (HTTP {status}): {detail}",
                             code="upstream_bad_request", retryable=False, fallback=False)
    return UpstreamError(502, f"the {target.role} model failed with HTTP {status}: {detail}",
                         code="upstream_error", retryable=retryable, unhealthy=status >= 500,
                         slow=status == 504, retry_after=retry_after_s(retry_after) if retryable else None)
