"""The canary split (`spec.model.canary`): which version of the model answers a request, and what
this gateway pod tells the operator's analysis about each version.

`Split.choose()` hashes the request's sticky key (its API key, tenant or header, as the spec says)
into [0, 100) and sends it to the canary when the point falls under the weight: the same key
always lands on the same version while the weight does not cross its point, and a weight that
rises only moves keys from stable to canary, never back. A request without the key is drawn by
chance (seeded in tests). The cost is one blake2b of a short string per request.

`VersionWindow` keeps each version's model calls (count, failures, latency buckets) in slices of a
tenth of the analysis window; `CanaryReporter` writes their sum (`aistack.api.canary_report`) on
the load Lease every `report_interval()` while the window holds a request, in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import aiohttp
from starlette.requests import Request

from aistack.api.canary_report import CanaryReport, VersionStats, canary_key, merged, report_interval
from aistack.api.gateway_config import CanaryConfig
from aistack.runtime.gateway.errors import GatewayError
from aistack.runtime.core.kube_api import TOKEN_DIR, LeasePatch, pod_name

log = logging.getLogger("aistack.gateway")
Version = Literal["stable", "canary"]
SLICES = 10
VERSION_HEADER = "x-aistack-model-version"
"""Pins a request to one version (`stable` or `canary`), past the split: what `aistack eval
--model-version` sends to evaluate each version on the same questions. Any caller the gateway lets in
may send it (both versions are the stack's own models); pinned calls count in the analysis too."""


def pinned_version(request: Request) -> Version | None:
    """The version `VERSION_HEADER` asks for; None without the header."""
    value = request.headers.get(VERSION_HEADER)
    if value is None:
        return None
    if value == "stable":
        return "stable"
    if value == "canary":
        return "canary"
    raise GatewayError(400, f"{VERSION_HEADER}: {value!r} is not a version of this stack's model; send "
                            "'stable' or 'canary'", code="invalid_model_version")


def point(key: str) -> float:
    """Where `key` falls in [0, 100)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100


class Split:
    """The weight in force and the sticky key's rule."""

    def __init__(self, config: CanaryConfig, *, rng: random.Random | None = None) -> None:
        self.weight = config.weight
        self.sticky_by = config.sticky_by
        self.header = (config.sticky_header or "").lower()
        self.rng = rng or random.Random(config.seed)

    def sticky_key(self, request: Request | None, *, api_key: str | None, tenant: str | None) -> str | None:
        """The request's sticky key, as the spec names it; None: the request has none."""
        if self.sticky_by == "apiKey":
            return api_key
        if self.sticky_by == "tenant":
            return tenant
        if self.sticky_by == "header" and request is not None:
            return request.headers.get(self.header) or None
        return None

    def choose(self, key: str | None) -> Version:
        if self.weight <= 0:
            return "stable"
        if self.weight >= 100:
            return "canary"
        at = point(key) if key is not None else self.rng.random() * 100
        return "canary" if at < self.weight else "stable"


class VersionWindow:
    """Each version's model calls over the last `window_s` seconds, in `SLICES` slices."""

    def __init__(self, window_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.slice_s = window_s / SLICES
        self.clock = clock
        self.slices: deque[tuple[int, dict[str, VersionStats]]] = deque()
        self.last_request_at = -1e18

    def observe(self, version: str, seconds: float, *, ok: bool) -> None:
        now = self.clock()
        index = int(now // self.slice_s)
        if not self.slices or self.slices[-1][0] != index:
            self.slices.append((index, {"stable": VersionStats(), "canary": VersionStats()}))
            self._trim(index)
        self.slices[-1][1][version].observe(seconds, ok=ok)
        self.last_request_at = now

    def _trim(self, index: int) -> None:
        while self.slices and self.slices[0][0] <= index - SLICES:
            self.slices.popleft()

    def totals(self) -> dict[str, VersionStats]:
        self._trim(int(self.clock() // self.slice_s))
        return {name: merged([s[name] for _, s in self.slices]) for name in ("stable", "canary")}

    @property
    def active(self) -> bool:
        """A request within the window (else the last report, all zeros, was the last to write)."""
        return self.clock() - self.last_request_at <= self.window_s


class CanaryReporter:
    """Writes this pod's window to the load Lease every `report_interval()` while it has traffic
    (and once more when the window empties), one write at a time, off the request path."""

    def __init__(self, *, api: str, namespace: str, lease: str, window: VersionWindow,
                 session: Callable[[], aiohttp.ClientSession], pod: str | None = None,
                 token_dir: Path | None = None) -> None:
        self.lease = LeasePatch(api=api, namespace=namespace, lease=lease, token_dir=token_dir or TOKEN_DIR)
        self.url = self.lease.url
        self.key = canary_key(pod_name(pod))
        self.window = window
        self.session = session
        self.interval_s = report_interval(window.window_s)
        self.writes = 0
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._idle_written = True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            active = self.window.active
            if active or not self._idle_written:
                await self.write()
                self._idle_written = not active

    async def write(self) -> bool:
        report = CanaryReport(at=time.time(), window=self.window.window_s, versions=self.window.totals())
        body = self.lease.body(self.key, report.encode())
        try:
            async with self.session().patch(self.url, json=body, headers=self.lease.headers(),
                                            ssl=self.lease.tls(),
                                            timeout=aiohttp.ClientTimeout(total=5)) as resp:
                ok, detail = resp.status < 300, "" if resp.status < 300 else (await resp.text())[:200]
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            ok, detail = False, f"{type(err).__name__}: {err}"
        if ok:
            self.writes += 1
        elif not self._failing:
            log.warning("could not report the canary's window to the operator (%s); retrying", detail)
        self._failing = not ok
        return ok

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
