"""A keyed work queue: when to run `reconcile(key)`, never what it does.

Triggers come from several places (kopf handlers, watch events, a drift pass) and in bursts
(a stack's dozen children report progress one by one). The queue turns them into runs with
three rules: runs for one key never overlap (`serialised`); a key already waiting is not
queued twice, so a burst gives one more run, not one each (`schedule`, with a debounce delay);
and every key is run again once per drift interval, the runs spread evenly over it, from one
task for all keys (`start_drift`), where a timer per key would hold a task per key.

A `gate` (kopf peering: is this operator paused?) is awaited before each run and each drift
step: while it is closed, waiting keys stay waiting, so a burst during a pause is still one run.

A key whose runs keep asking to run again (the API refusing, Qdrant down, a layer starting)
backs off exponentially, per key: `retry_delay`, then twice that, up to `max_retry_delay`,
each with up to half again at random so that stacks failing together do not retry together
(`backoff`). A run that does not ask again resets it. A trigger for an earlier time (a child
changed) replaces a later retry that is waiting, so a long backoff never delays real news.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class WorkQueue(Generic[Key]):
    """Runs `reconcile(key)` when asked to, one run at a time per key; a run that returns True
    asks to be run again after `retry_delay` seconds."""

    def __init__(self, reconcile: Callable[[Key], Awaitable[bool]], *, retry_delay: float,
                 max_retry_delay: float = 300.0, gate: Callable[[], Awaitable[object]] | None = None) -> None:
        self.reconcile, self.retry_delay, self.gate = reconcile, retry_delay, gate
        self.max_retry_delay = max(max_retry_delay, retry_delay)
        self._failures: dict[Key, int] = {}
        self.context: contextvars.Context | None = None
        """The context scheduled runs start in (the operator sets a kopf handler's, so that
        `kopf.event` finds kopf's event queue there too); None: the scheduling caller's."""
        self._locks: dict[Key, tuple[asyncio.Lock, int]] = {}  # the lock, and how many hold or await it
        self._pending: dict[Key, tuple[asyncio.Task[None], float]] = {}  # the task, when it is due
        self._tasks: set[asyncio.Task[None]] = set()
        self._drift: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def serialised(self, key: Key) -> AsyncIterator[None]:
        """Hold `key`: no run of the queue's, nor another holder, works on it meanwhile. A lock
        exists only while someone holds or awaits it, so deleted keys leave nothing behind."""
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def schedule(self, key: Key, *, delay: float = 0) -> None:
        """Run `key` after `delay` seconds, unless a run of it is already waiting to start at
        that time or sooner (one due later is moved to this time)."""
        due = asyncio.get_running_loop().time() + delay
        waiting = self._pending.get(key)
        if waiting is not None:
            if waiting[1] <= due:
                return
            waiting[0].cancel()
        task = asyncio.create_task(self._later(key, delay), context=self.context)
        self._pending[key] = (task, due)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def backoff(self, key: Key) -> float:
        """Seconds before `key`'s next retry, counting this failure: `retry_delay` doubled per
        failure in a row, capped at `max_retry_delay`, plus up to half of it at random."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self.retry_delay * 2.0 ** min(failures, 32), self.max_retry_delay)
        return float(delay * random.uniform(1.0, 1.5))

    def retry(self, key: Key) -> None:
        """`key`'s run failed or is not finished: run it again after its `backoff`."""
        self.schedule(key, delay=self.backoff(key))

    def succeeded(self, key: Key) -> None:
        """`key`'s run finished its work: the next failure backs off from `retry_delay` again."""
        self._failures.pop(key, None)

    def forget(self, key: Key) -> None:
        """`key` is gone (a deleted object): a run still waiting to start is cancelled."""
        self._failures.pop(key, None)
        waiting = self._pending.pop(key, None)
        if waiting is not None:
            waiting[0].cancel()

    async def unpaused(self) -> None:
        """Return once the gate lets work go on (at once without a gate)."""
        if self.gate is not None:
            await self.gate()

    async def _later(self, key: Key, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.unpaused()  # held while paused, still pending: a burst stays one run
        self._pending.pop(key, None)
        async with self.serialised(key):
            again = await self.reconcile(key)
        if again:
            self.retry(key)
        else:
            self.succeeded(key)

    # -- the drift pass ------------------------------------------------------------------------
    def start_drift(self, keys: Callable[[], Sequence[Key]], *, interval: float) -> None:
        """Schedule every key of `keys()` once per `interval` seconds, spread evenly over it
        (`keys` is asked again at the start of each pass). Started once: a second call while
        the pass runs does nothing."""
        if self._drift is None:
            self._drift = asyncio.create_task(self._drift_pass(keys, interval), name="drift checks")

    def stop_drift(self) -> None:
        if self._drift is not None:
            self._drift.cancel()
            self._drift = None

    async def _drift_pass(self, keys: Callable[[], Sequence[Key]], interval: float) -> None:
        while True:
            current = list(keys())
            if not current:
                await asyncio.sleep(interval)
                continue
            step = interval / len(current)
            for key in current:
                await asyncio.sleep(step)
                await self.unpaused()
                self.schedule(key)  # a key gone meanwhile is the reconcile's to skip when its turn comes
