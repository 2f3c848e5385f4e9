"""The keyed work queue alone, with a fake reconcile: serialised per key, coalesced, debounced,
forgotten on deletion, gated, retried, and the drift pass spread over its interval."""

from __future__ import annotations

import asyncio
import time
from itertools import pairwise

from aistack.operator.machinery.queue import WorkQueue


class FakeReconcile:
    """Records each run (key, start, end) and how many runs overlap; each run takes `takes` s."""

    def __init__(self, *, takes: float = 0.0, again: int = 0) -> None:
        self.takes, self.again = takes, again
        self.runs: list[tuple[str, float, float]] = []
        self.running: dict[str, int] = {}
        self.most_at_once: dict[str, int] = {}

    async def __call__(self, key: str) -> bool:
        start = time.monotonic()
        self.running[key] = self.running.get(key, 0) + 1
        self.most_at_once[key] = max(self.most_at_once.get(key, 0), self.running[key])
        await asyncio.sleep(self.takes)
        self.running[key] -= 1
        self.runs.append((key, start, time.monotonic()))
        if self.again > 0:
            self.again -= 1
            return True
        return False

    def keys(self) -> list[str]:
        return [key for key, _, _ in self.runs]


async def test_runs_of_one_key_never_overlap_and_runs_of_two_keys_do() -> None:
    fake = FakeReconcile(takes=0.05)
    queue: WorkQueue[str] = WorkQueue(fake, retry_delay=10)

    async def held(key: str) -> None:  # a kopf handler's run of the same key
        async with queue.serialised(key):
            await fake(key)

    queue.schedule("a")
    queue.schedule("b")
    await asyncio.sleep(0)
    await asyncio.gather(held("a"), held("b"), asyncio.sleep(0.2))
    assert sorted(fake.keys()) == ["a", "a", "b", "b"]
    assert fake.most_at_once == {"a": 1, "b": 1}
    a_runs = [(start, end) for key, start, end in fake.runs if key == "a"]
    b_first = min(start for key, start, _ in fake.runs if key == "b")
    assert a_runs[0][1] <= a_runs[1][0]  # one after the other
    assert b_first < a_runs[0][1]  # "b" did not wait for "a"
    assert not queue._locks  # no lock is kept once nobody holds one


async def test_triggers_while_one_waits_are_coalesced_into_one_run() -> None:
    fake = FakeReconcile()
    queue: WorkQueue[str] = WorkQueue(fake, retry_delay=10)
    for _ in range(5):
        queue.schedule("a", delay=0.05)
    queue.schedule("b", delay=0.05)
    await asyncio.sleep(0.15)
    assert sorted(fake.keys()) == ["a", "b"]


async def test_a_burst_within_the_debounce_delay_is_one_run_after_the_delay() -> None:
    """The delay counts from the burst's first trigger: later ones join the waiting run."""
    fake = FakeReconcile()
    queue: WorkQueue[str] = WorkQueue(fake, retry_delay=10)
    started = time.monotonic()
    for _ in range(3):
        queue.schedule("a", delay=0.2)
        await asyncio.sleep(0.02)
    assert fake.runs == []  # still gathering
    await asyncio.sleep(0.3)
    assert fake.keys() == ["a"]
    assert fake.runs[0][1] - started >= 0.19
    queue.schedule("a", delay=0)  # a trigger after the run: one run more
    await asyncio.sleep(0.02)
    assert fake.keys() == ["a", "a"]


async def test_a_trigger_during_a_run_gives_one_run_after_it() -> None:
    fake = FakeReconcile(takes=0.05)
    queue: WorkQueue[str] = WorkQueue(fake, retry_delay=10)
    queue.schedule("a")
    await asyncio.sleep(0.01)  # running
    queue.schedule("a")
    queue.schedule("a")
    await asyncio.sleep(0.15)
    assert fake.keys() == ["a", "a"] and fake.most_at_once == {"a": 1}


async def test_a_forgotten_key_does_not_run() -> None:
    fake = FakeReconcile()
    queue: WorkQueue[str] = WorkQueue(fake, retry_delay=10)
    queue.schedule("a", delay=0.05)
    queue.schedule("b", delay=0.05)
    queue.forget("a")
    queue.forget("c")  # never scheduled: nothing to do
    await asyncio.sleep(0.1)
    assert fake.keys() == ["b"]
    queue.schedule("a")  # a key of the same name later is a new key
    await asyncio.sleep(0.01)
    assert fake.keys() == ["b", "a"]


async def test_a_run_that_asks_again_is_run_again_after_the_retry_delay() -> None:
    fake = FakeReconcile(again=2)
    queue: WorkQueue[str] = WorkQueue(fake, retry_delay=0.05)
    queue.schedule("a")
    await asyncio.sleep(0.02)
    assert fake.keys() == ["a"]
    await asyncio.sleep(0.3)
    assert fake.keys() == ["a", "a", "a"]
    gaps = [later[1] - earlier[1] for earlier, later in pairwise(fake.runs)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095  # the second retry waits twice as long


async def test_retries_back_off_exponentially_per_key_with_jitter_and_reset_on_success() -> None:
    queue: WorkQueue[str] = WorkQueue(FakeReconcile(), retry_delay=5, max_retry_delay=60)
    delays = [queue.backoff("a") for _ in range(6)]
    for delay, base in zip(delays, [5, 10, 20, 40, 60, 60], strict=True):
        assert base <= delay <= 1.5 * base
    assert 5 <= queue.backoff("b") <= 7.5  # another stack's failures are its own
    jittered = {WorkQueue(FakeReconcile(), retry_delay=5).backoff("a") for _ in range(20)}
    assert len(jittered) > 1  # stacks failing together do not retry together
    queue.succeeded("a")
    assert 5 <= queue.backoff("a") <= 7.5


async def test_a_sooner_trigger_replaces_a_retry_waiting_longer() -> None:
    fake = FakeReconcile()
    queue: WorkQueue[str] = WorkQueue(fake, retry_delay=10)
    queue.schedule("a", delay=60)  # a long backoff
    queue.schedule("a", delay=0.01)  # a child changed: run now
    await asyncio.sleep(0.1)
    assert fake.keys() == ["a"]
    queue.schedule("a", delay=60)
    queue.schedule("a", delay=120)  # later than the one waiting: nothing changes
    queue.forget("a")


async def test_a_closed_gate_holds_runs_and_a_burst_meanwhile_stays_one_run() -> None:
    fake = FakeReconcile()
    gate = asyncio.Event()
    queue: WorkQueue[str] = WorkQueue(fake, retry_delay=10, gate=gate.wait)
    for _ in range(3):
        queue.schedule("a")
        await asyncio.sleep(0.02)
    assert fake.runs == []
    gate.set()
    await asyncio.sleep(0.02)
    assert fake.keys() == ["a"]


async def test_the_drift_pass_spreads_every_key_over_the_interval() -> None:
    fake = FakeReconcile()
    keys = ["a", "b", "c", "d"]
    queue: WorkQueue[str] = WorkQueue(fake, retry_delay=10)
    started = time.monotonic()
    queue.start_drift(lambda: keys, interval=0.4)
    queue.start_drift(lambda: ["x"], interval=0.01)  # already running: ignored
    await asyncio.sleep(0.5)
    queue.stop_drift()
    first_pass = fake.runs[:4]
    assert [key for key, _, _ in first_pass] == keys
    starts = [started] + [start for _, start, _ in first_pass]
    gaps = [later - earlier for earlier, later in pairwise(starts)]
    assert all(0.09 <= gap < 0.2 for gap in gaps), gaps  # interval / 4 keys apart, not all at once
    runs = len(fake.runs)
    await asyncio.sleep(0.2)
    assert len(fake.runs) == runs  # stopped


async def test_the_drift_pass_waits_for_keys_and_asks_for_them_each_pass() -> None:
    fake = FakeReconcile()
    keys: list[str] = []
    queue: WorkQueue[str] = WorkQueue(fake, retry_delay=10)
    queue.start_drift(lambda: keys, interval=0.05)
    await asyncio.sleep(0.07)
    assert fake.runs == []
    keys.append("a")
    await asyncio.sleep(0.15)
    queue.stop_drift()
    assert set(fake.keys()) == {"a"} and len(fake.runs) >= 1
