"""`aistack up`'s vLLM engines follow `spec.model.vllm.autoscaling`, as a cluster's model replicas do.

The decision is the operator's own (`aistack.api.scale_policy.decide()`), fed with the load the
gateway in this process counts (`Demand`: requests in flight to the model, held ones included, and
the engines' queued requests from their `/metrics`), looked at every `TICK_S`:

- an idle engine stops after `idleSeconds` with `minReplicas: 0` (its process group ends, so its
  ~4 GB are free again); a request that comes then is held by the gateway (its replica list is
  empty: `ReplicaPool.list_urls()`), which counts as demand, so an engine starts at once, and the
  gateway sends the held request on when the engine is listed, once ready;
- between `minReplicas` and `maxReplicas` more engines start as the load grows, each on a port of
  its own, but only while the machine has `ENGINE_MEMORY_BYTES` available (MemAvailable): an engine
  that would push the machine into swap serves no faster, so the count stays and the panel says
  why. Fewer engines after `scaleDownDelaySeconds` of lower load, and an engine is stopped only
  while the gateway has no request on it (it leaves the gateway's list first, in the same step);
- an engine that fails to start is retried only after `START_BACKOFF_S` (held requests meanwhile
  get the gateway's 503 with Retry-After when their hold ends).

The engines that serve are `engines`, the same list the runner restarts an exited engine from.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aistack.api.scale_policy import ScaleMemory, ScalePolicy, decide
from aistack.runtime.local.engine_model import EngineUnavailable, LocalEngine

log = logging.getLogger("aistack.up")

TICK_S = 0.25
"""How often the load is looked at: a held request waits at most this long for its engine to start."""
ENGINE_MEMORY_BYTES = 5 * 2**30
"""What one more engine of the offline model needs free: ~4 GB resident (measured: its API server,
EngineCore and worker) plus its 1 GiB KV cache (`VLLM_CPU_KVCACHE_SPACE`)."""
START_BACKOFF_S = 30.0
MEMINFO = Path("/proc/meminfo")


def memory_available(meminfo: Path = MEMINFO) -> int | None:
    """Bytes the kernel says can be had without swapping (MemAvailable); None where unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class EngineScaler:
    """Starts and stops `aistack up`'s engines for the load (see the module)."""

    def __init__(self, *, policy: ScalePolicy, engines: list[LocalEngine],
                 start: Callable[[int], Awaitable[LocalEngine]],
                 stop: Callable[[LocalEngine], Awaitable[None]],
                 listed: Callable[[list[str]], None], load: Callable[[], tuple[int, int, int]],
                 busy: Callable[[str], int], on_change: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic,
                 memory: Callable[[], int | None] = memory_available) -> None:
        """`start(n)`: the `n`-th engine (its log), started and ready; `stop(engine)`: stopped;
        `listed(urls)`: the gateway routes to these now; `load()`: (requests in flight or held,
        held, waiting in the engines); `busy(url)`: the gateway's requests on that engine."""
        self.policy = policy
        self.engines = engines
        self._start, self._stop, self._listed, self._load, self._busy = start, stop, listed, load, busy
        self._on_change = on_change
        self.clock = clock
        self.memory = memory
        self.starting: dict[int, asyncio.Task[LocalEngine]] = {}
        self.memory_note = ""
        self.failure = ""
        self._failed_at = -1e9
        self._memory = ScaleMemory(busy_at=clock())
        self.last_reason = ""
        self.started = self.stopped = 0

    @property
    def current(self) -> int:
        return len(self.engines) + len(self.starting)

    def state(self) -> str:
        """One line for the panel: what the engines do and why."""
        p = self.policy
        bounds = f"autoscaling {p.min_replicas}-{p.max_replicas}, {p.target} requests each" + (
            f", {p.target_waiting} waiting each" if p.target_waiting is not None else "")
        if self.starting:
            what = f"starting {len(self.starting)} engine{'s' if len(self.starting) > 1 else ''}" + (
                f" ({len(self.engines)} serving)" if self.engines else " (requests are held meanwhile)")
        elif not self.engines:
            what = (f"scaled to zero (no request for {p.idle_s:g} s): the next request starts an engine"
                    if not self.failure else f"no engine: {self.failure}")
        else:
            what = f"{len(self.engines)} engine{'s' if len(self.engines) > 1 else ''} serving"
        return f"{what} ({bounds})" + (f"; {self.memory_note}" if self.memory_note else "")

    def publish(self) -> None:
        """The gateway routes to the engines that serve (ready), and only to them."""
        self._listed([f"{e.base_url}/v1" for e in self.engines])

    async def run(self) -> None:
        """Decide every `TICK_S` until cancelled (then engines still starting are stopped)."""
        try:
            while True:
                await self.step()
                await asyncio.sleep(TICK_S)
        finally:
            await self.aclose()

    async def step(self) -> None:
        demand, held, waiting = self._load()
        now = self.clock()
        decision = decide(self.policy, current=self.current, demand=demand, waiting=waiting, now=now,
                          memory=self._memory)
        self._memory = decision.memory
        if decision.replicas > self.current:
            self._scale_up(decision.replicas - self.current, reason=decision.reason, now=now)
        elif decision.replicas < self.current and not self.starting:
            await self._scale_down(self.current - decision.replicas, reason=decision.reason)

    def _scale_up(self, more: int, *, reason: str, now: float) -> None:
        if now - self._failed_at < START_BACKOFF_S:
            return
        note = ""
        wanted = self.current + more
        for _ in range(more):
            if self.current > 0:  # the first engine always starts: without it nothing serves
                free = self.memory()
                if free is not None and free < ENGINE_MEMORY_BYTES:
                    note = (f"{wanted} engines wanted ({reason}), {self.current} run: one more needs "
                            f"~{ENGINE_MEMORY_BYTES / 2**30:.1f} GiB and {free / 2**30:.1f} GiB is available")
                    break
            index = min(set(range(self.current + 1)) - self._indexes())
            self.starting[index] = asyncio.ensure_future(self._start(index))
            self.starting[index].add_done_callback(functools.partial(self._started, index))
            log.info("starting a vLLM engine: %s", reason)
            self.last_reason = reason
        if note != self.memory_note:
            self.memory_note = note
            self._on_change()
        elif self.starting:
            self._on_change()

    def _indexes(self) -> set[int]:
        return set(self.starting) | {e.index for e in self.engines}

    def _started(self, index: int, task: asyncio.Task[LocalEngine]) -> None:
        self.starting.pop(index, None)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.failure = str(error) if isinstance(error, EngineUnavailable) else repr(error)
            self._failed_at = self.clock()
            log.warning("a vLLM engine did not start: %s (trying again in %.0f s)", self.failure,
                        START_BACKOFF_S)
        else:
            engine = task.result()
            self.engines.append(engine)
            self.failure = ""
            self.started += 1
            self.publish()
        self._on_change()

    async def _scale_down(self, fewer: int, *, reason: str) -> None:
        idle = [e for e in reversed(self.engines) if self._busy(f"{e.base_url}/v1") == 0][:fewer]
        if not idle:
            return  # every engine has a request on it: look again next step
        for engine in idle:  # out of the gateway's list in this same step: no request picks it now
            self.engines.remove(engine)
        self.publish()
        self.last_reason = reason
        log.info("stopping %d vLLM engine%s: %s", len(idle), "s" if len(idle) > 1 else "", reason)
        self._on_change()
        await asyncio.gather(*(self._stop(engine) for engine in idle))
        self.stopped += len(idle)
        self._on_change()

    async def aclose(self) -> None:
        tasks = list(self.starting.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self.starting.clear()
