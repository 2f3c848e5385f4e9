"""The self-hosted model's demand as this gateway pod sees it, and its report to the operator's
built-in autoscaler (`spec.model.vllm.autoscaling`).

`Demand` counts the requests in flight to the model and those held while it has no ready replica
(scaled to zero, starting), publishes both as `aistack_gateway_model_demand` and
`aistack_gateway_model_held` (KEDA's trigger reads the first through Prometheus), takes the engines'
own queue and KV-cache usage from each round of `EngineMetrics` reads (`engines()`), and tells the
`LeaseReporter`. The reporter merge-patches this pod's annotation of the load Lease
(`aistack.api.model_load`) with the one right the pod has (`patch` on that Lease): only when the
demand (or, with `targetWaiting`, the engines' queue) changed materially, at once when it goes
from zero or a request starts waiting, at most once
a second otherwise, and every `HEARTBEAT_SECONDS` while it is not zero (so a gone pod's report ages
out). Writes run in the background, one at a time; the request path never waits on the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from aistack.api.gateway_config import ModelScaling
from aistack.api.model_load import HEARTBEAT_SECONDS, LoadReport, material, report_key
from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.core.kube_api import TOKEN_DIR, LeasePatch, pod_name

log = logging.getLogger("aistack.gateway")
MIN_INTERVAL_S = 1.0


class LeaseReporter:
    """Writes this pod's load to the Lease `lease` in `namespace` when it changes materially."""

    def __init__(self, *, api: str, namespace: str, lease: str, target: int,
                 session: Callable[[], aiohttp.ClientSession], pod: str | None = None,
                 token_dir: Path = TOKEN_DIR, target_waiting: int | None = None) -> None:
        """`session`: the gateway's HTTP session (made on first use, in the serving loop)."""
        self.lease = LeasePatch(api=api, namespace=namespace, lease=lease, token_dir=token_dir)
        self.url = self.lease.url
        self.key = report_key(pod_name(pod))
        self.target = target
        self.target_waiting = target_waiting
        self.session = session
        self.demand = self.held = self.waiting = 0
        self.kv: float | None = None
        self.written: tuple[int, int, int] | None = None
        self.written_at = -1e9
        self.writes = 0
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failing = False
        self.closed = False

    def update(self, demand: int, held: int, waiting: int = 0, kv: float | None = None) -> None:
        """The counts changed: write now, later, or not at all."""
        if self.closed:
            return
        self.demand, self.held, self.waiting, self.kv = demand, held, waiting, kv
        self._schedule()

    def _due(self) -> float | None:
        """Seconds until the next write is due; None: nothing to write."""
        if self.written is None:  # a pod that never had load has nothing to say (a missing report is 0)
            return 0.0 if self.demand or self.held or self.waiting else None
        old_demand, old_held, old_waiting = self.written
        since = time.monotonic() - self.written_at
        urgent = (old_held == 0 and self.held > 0) or (old_demand == 0 and self.demand > 0)
        if urgent or (self._failing and self.demand != old_demand):
            return 0.0
        queue = self.target_waiting is not None and material(old_waiting, self.waiting,
                                                              target=self.target_waiting, zero=False)
        if material(old_demand, self.demand, target=self.target) or (self.held == 0) != (old_held == 0) \
                or queue:
            return max(0.0, MIN_INTERVAL_S - since)
        if self.demand > 0 or self.waiting > 0:
            return max(0.0, HEARTBEAT_SECONDS - since)
        return None

    def _schedule(self) -> None:
        if self.closed:
            return
        if self._task is not None and not self._task.done():
            return  # the write in flight looks again when it ends
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = self._due()
        if due is None:
            return
        loop = asyncio.get_running_loop()
        if due <= 0:
            self._task = loop.create_task(self._write())
        else:
            self._timer = loop.call_later(due, self._schedule)

    async def _write(self) -> None:
        report = LoadReport(demand=self.demand, held=self.held, at=time.time(), waiting=self.waiting,
                            kv=self.kv)
        body = self.lease.body(self.key, report.encode())
        try:
            async with self.session().patch(self.url, json=body, headers=self.lease.headers(),
                                            ssl=self.lease.tls(),
                                          timeout=aiohttp.ClientTimeout(total=5)) as resp:
                ok = resp.status < 300
                detail = "" if ok else (await resp.text())[:200]
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            ok, detail = False, f"{type(err).__name__}: {err}"
        self.written_at = time.monotonic()
        if ok:
            self.written, self.writes = (report.demand, report.held, report.waiting), self.writes + 1
            if self._failing:
                log.info("reporting the model's load to the autoscaler works again")
            self._failing = False
        else:
            if not self._failing:
                log.warning("could not report the model's load to the autoscaler (%s); retrying", detail)
            self._failing = True
        self._task = None
        if not self.closed:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(MIN_INTERVAL_S if not ok else 0.0, self._schedule)

    async def aclose(self) -> None:
        """The pod stops (or its config is replaced): report nothing left, or its last report would
        keep the model up until it goes stale."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), 2)
        if self.written is not None and self.written != (0, 0, 0):
            self.demand = self.held = self.waiting = 0
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._write(), 3)
        if self._timer is not None:
            self._timer.cancel()


class Demand:
    """Requests of this pod in flight to the model or held for it."""

    def __init__(self, *, scaling: ModelScaling, stack: str, namespace: str, metrics: GatewayMetrics,
                 reporter: LeaseReporter | None = None) -> None:
        self.scaling = scaling
        self.in_flight = self.held = 0
        self.waiting = 0
        """Requests queued in the model's engines at the last read of their `/metrics`."""
        self.kv: float | None = None
        """The highest KV-cache usage among them; None: not read."""
        self.reporter = reporter
        self._demand = metrics.model_demand.labels(stack, namespace)
        self._held = metrics.model_held.labels(stack, namespace)
        self._demand.set(0)
        self._held.set(0)

    def started(self) -> None:
        self.in_flight += 1
        self._changed()

    def finished(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self._changed()

    def hold(self, delta: int) -> None:
        self.held = max(0, self.held + delta)
        self._changed()

    def engines(self, *, waiting: int, kv: float | None) -> None:
        """A round of reads of the engines' `/metrics` (every replica the gateway routes to)."""
        self.waiting, self.kv = waiting, kv
        if self.reporter is not None:
            self.reporter.update(self.in_flight, self.held, self.waiting, self.kv)

    def _changed(self) -> None:
        self._demand.set(self.in_flight)
        self._held.set(self.held)
        if self.reporter is not None:
            self.reporter.update(self.in_flight, self.held, self.waiting, self.kv)
