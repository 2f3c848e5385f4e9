"""The model client: any OpenAI-compatible upstream (vLLM, a hosted API) over pooled async HTTP.

Retries with backoff happen only before the first byte of an answer reaches the client
(a retried stream after that would send text twice); then the fallback upstream, when the
spec declares one, gets the same request. Streams are passed through event by event.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from aistack.api.gateway_config import Upstream
from aistack.runtime.gateway.errors import GatewayError
from aistack.runtime.gateway.metrics import GatewayMetrics

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class UpstreamError(GatewayError):
    """A model upstream failed; `retryable` says whether another try (or the fallback) may help."""

    def __init__(self, status: int, message: str, *, code: str, retryable: bool) -> None:
        super().__init__(status, message, code=code)
        self.retryable = retryable


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
                raise ValueError(f"the {role} model's API key env var {upstream.api_key_env} is unset or empty; "
                                 "set it (the operator fills it from the Secret)")
            headers["Authorization"] = f"Bearer {key}"
        return cls(role=role, upstream=upstream, headers=headers)

    def timeout(self) -> httpx.Timeout:
        total = self.upstream.timeout_seconds
        return httpx.Timeout(total, connect=min(5.0, total))


class UpstreamStream:
    """An open SSE stream whose first event already arrived; iterate it for parsed chunks."""

    def __init__(self, response: httpx.Response, lines: AsyncIterator[str], first: dict[str, Any], target: Target) -> None:
        self.response = response
        self._lines = lines
        self._first: dict[str, Any] | None = first
        self.target = target

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
            await self.response.aclose()

    async def aclose(self) -> None:
        await self.response.aclose()


async def _next_event(lines: AsyncIterator[str], target: Target) -> dict[str, Any] | None:
    """The next `data:` event as a dict; None at `[DONE]` or a clean end of stream."""
    try:
        async for line in lines:
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return None
            try:
                event = json.loads(data)
            except ValueError:
                raise UpstreamError(502, f"the {target.role} model sent a malformed stream event",
                                    code="upstream_error", retryable=False) from None
            if isinstance(event, dict) and "error" in event:
                message = (event["error"] or {}).get("message", "error") if isinstance(event["error"], dict) else str(event["error"])
                raise UpstreamError(502, f"the {target.role} model failed mid-stream: {message}",
                                    code="upstream_error", retryable=False)
            return event
    except httpx.TimeoutException:
        raise UpstreamError(504, f"the {target.role} model stopped sending within {target.upstream.timeout_seconds}s",
                            code="upstream_timeout", retryable=True) from None
    except httpx.TransportError as err:
        raise UpstreamError(502, f"the {target.role} model's connection broke mid-stream ({type(err).__name__})",
                            code="upstream_error", retryable=True) from None
    return None


class ModelClient:
    """Chat completions against the primary upstream, then the fallback."""

    def __init__(self, *, primary: Upstream, fallback: Upstream | None, http: httpx.AsyncClient,
                 metrics: GatewayMetrics, retries: int = 2, backoff_s: float = 0.05) -> None:
        self.targets = [Target.of("primary", primary)] + ([Target.of("fallback", fallback)] if fallback else [])
        self.http = http
        self.metrics = metrics
        self.retries = retries
        self.backoff_s = backoff_s

    async def complete(self, payload: dict[str, Any]) -> tuple[dict[str, Any], Target]:
        """A non-streamed completion and the target that answered."""
        return await self._with_retries(payload, stream=False)

    async def stream(self, payload: dict[str, Any]) -> UpstreamStream:
        """Open a stream; returns once the first event arrived (retries and fallback before that)."""
        result, _ = await self._with_retries({**payload, "stream": True}, stream=True)
        return result

    async def _with_retries(self, payload: dict[str, Any], *, stream: bool) -> tuple[Any, Target]:
        last: UpstreamError | None = None
        for target in self.targets:
            for attempt in range(self.retries + 1):
                try:
                    result = await (self._open_stream(target, payload) if stream else self._post(target, payload))
                    if target.role == "fallback":
                        self.metrics.fallbacks.inc()
                    return result, target
                except UpstreamError as err:
                    self.metrics.upstream_errors.labels(target.role, err.code or "error").inc()
                    last = err
                    if not err.retryable:
                        raise
                    if err.code == "upstream_timeout":
                        break  # a second wait as long is worse than trying the fallback
                    if attempt < self.retries:
                        await asyncio.sleep(self.backoff_s * 2**attempt)
        assert last is not None
        raise last

    def _body(self, target: Target, payload: dict[str, Any]) -> bytes:
        return json.dumps({**payload, "model": target.upstream.model}).encode()

    async def _post(self, target: Target, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{target.upstream.base_url}/chat/completions"
        try:
            resp = await self.http.post(url, content=self._body(target, payload), headers=target.headers,
                                        timeout=target.timeout())
        except httpx.TimeoutException:
            raise _timeout(target) from None
        except httpx.TransportError as err:
            raise _unreachable(target, err) from None
        if resp.status_code != 200:
            raise _status_error(target, resp.status_code, resp.content)
        try:
            return resp.json()
        except ValueError:
            raise UpstreamError(502, f"the {target.role} model answered with a body that is not JSON",
                                code="upstream_error", retryable=True) from None

    async def _open_stream(self, target: Target, payload: dict[str, Any]) -> UpstreamStream:
        url = f"{target.upstream.base_url}/chat/completions"
        request = self.http.build_request("POST", url, content=self._body(target, payload), headers=target.headers,
                                          timeout=target.timeout())
        try:
            resp = await self.http.send(request, stream=True)
        except httpx.TimeoutException:
            raise _timeout(target) from None
        except httpx.TransportError as err:
            raise _unreachable(target, err) from None
        try:
            if resp.status_code != 200:
                raise _status_error(target, resp.status_code, await resp.aread())
            lines = resp.aiter_lines()
            first = await _next_event(lines, target)
            if first is None:
                raise UpstreamError(502, f"the {target.role} model ended the stream without an event",
                                    code="upstream_error", retryable=True)
        except BaseException:
            await resp.aclose()
            raise
        return UpstreamStream(resp, lines, first, target)

    async def models_reachable(self, timeout_s: float = 2.0) -> bool:
        """Readiness: the primary (or else the fallback) answers `GET /models`."""
        for target in self.targets:
            try:
                resp = await self.http.get(f"{target.upstream.base_url}/models", headers=target.headers,
                                           timeout=timeout_s)
                if resp.status_code == 200:
                    return True
            except httpx.HTTPError:
                continue
        return False


def _timeout(target: Target) -> UpstreamError:
    return UpstreamError(504, f"the {target.role} model did not answer within {target.upstream.timeout_seconds}s",
                         code="upstream_timeout", retryable=True)


def _unreachable(target: Target, err: Exception) -> UpstreamError:
    return UpstreamError(503, f"the {target.role} model is unreachable ({type(err).__name__}); retry later",
                         code="upstream_unavailable", retryable=True)


def _status_error(target: Target, status: int, content: bytes) -> UpstreamError:
    try:
        detail = json.loads(content)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = content[:200].decode(errors="replace")
    if status == 400:
        return UpstreamError(400, f"the model rejected the request: {detail}", code="upstream_bad_request",
                             retryable=False)
    if status == 429:
        return UpstreamError(429, f"the {target.role} model is rate limited: {detail}; retry later",
                             code="upstream_rate_limited", retryable=True)
    if status in (401, 403):
        return UpstreamError(502, f"the {target.role} model refused the gateway's credentials (HTTP {status}); "
                                  "check the API key Secret", code="upstream_auth", retryable=True)
    return UpstreamError(502, f"the {target.role} model failed with HTTP {status}: {detail}",
                         code="upstream_error", retryable=status in RETRYABLE_STATUS or status == 404)
