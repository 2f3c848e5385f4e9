"""`aistack up`'s engine autoscaler with stand-in engines (no vLLM): when it starts and stops them,
what it lists to the gateway, and what the panel says. The real engines' run is
tests/integration/engine/test_up_scaling.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from aistack.api.scale_policy import ScalePolicy
from aistack.runtime.local.engine_model import EngineUnavailable, LocalEngine
from aistack.runtime.local.engine_scaler import ENGINE_MEMORY_BYTES, EngineScaler, memory_available


class Harness:
    """The scaler with engines that start when `ready` is set, a clock set by hand and the load,
    memory and busy counts the test sets."""

    def __init__(self, policy: ScalePolicy, *, running: int = 1) -> None:
        self.now = 0.0
        self.load = (0, 0, 0)
        self.free: int | None = 64 * 2**30
        self.busy: dict[str, int] = {}
        self.listed: list[list[str]] = []
        self.stopped: list[str] = []
        self.ready = asyncio.Event()
        self.fail = False
        self.changes = 0
        engines = [self.engine(i) for i in range(running)]
        self.scaler = EngineScaler(policy=policy, engines=engines, start=self.start, stop=self.stop,
                                   listed=self.listed.append, load=lambda: self.load,
                                   busy=lambda url: self.busy.get(url, 0), on_change=self.changed,
                                   clock=lambda: self.now, memory=lambda: self.free)

    def engine(self, index: int) -> LocalEngine:
        server: Any = SimpleNamespace(base_url=f"http://127.0.0.1:{9000 + index}")
        return LocalEngine(server, "cpu", plan=None, index=index)  # type: ignore[arg-type]

    async def start(self, index: int) -> LocalEngine:
        await self.ready.wait()
        if self.fail:
            raise EngineUnavailable("the vLLM engine exited with code 1 while starting")
        return self.engine(index)

    async def stop(self, engine: LocalEngine) -> None:
        self.stopped.append(engine.base_url)

    def changed(self) -> None:
        self.changes += 1

    async def at(self, now: float, load: tuple[int, int, int] | None = None) -> None:
        self.now = now
        if load is not None:
            self.load = load
        await self.scaler.step()
        await asyncio.sleep(0)  # done callbacks of engines that started

    @property
    def urls(self) -> list[str]:
        return [e.base_url for e in self.scaler.engines]


ZERO = ScalePolicy(min_replicas=0, max_replicas=2, target=2, down_delay_s=5, idle_s=10)


async def test_an_idle_engine_stops_and_a_held_request_starts_one_listed_once_ready() -> None:
    h = Harness(ZERO)
    await h.at(5)
    assert h.urls == ["http://127.0.0.1:9000"] and not h.stopped
    await h.at(10.5)
    assert h.urls == [] and h.stopped == ["http://127.0.0.1:9000"] and h.listed[-1] == []
    assert h.scaler.state().startswith("scaled to zero (no request for 10 s)")
    await h.at(20, load=(1, 1, 0))  # the gateway holds a request
    assert len(h.scaler.starting) == 1 and h.listed[-1] == []  # not listed until ready
    assert "requests are held meanwhile" in h.scaler.state()
    h.ready.set()
    await asyncio.sleep(0.01)
    assert h.urls == ["http://127.0.0.1:9000"] and h.listed[-1] == ["http://127.0.0.1:9000/v1"]
    assert h.scaler.state().startswith("1 engine serving")


async def test_the_load_adds_engines_up_to_max_where_memory_allows_and_removes_idle_ones_after_the_delay(
        ) -> None:
    policy = ScalePolicy(min_replicas=1, max_replicas=3, target=2, down_delay_s=5, idle_s=10)
    h = Harness(policy)
    h.ready.set()
    h.free = ENGINE_MEMORY_BYTES - 1
    await h.at(1, load=(6, 0, 0))  # 3 engines wanted, no memory for a second
    assert not h.scaler.starting and "3 engines wanted" in h.scaler.state() and "GiB is available" in \
        h.scaler.state()
    h.free = 64 * 2**30
    await h.at(2)
    await asyncio.sleep(0.01)
    assert len(h.urls) == 3 and h.scaler.memory_note == ""
    h.busy = {"http://127.0.0.1:9002/v1": 1, "http://127.0.0.1:9001/v1": 1}
    await h.at(3, load=(2, 0, 0))  # fits 2 at 80%: down after the delay, and only an idle engine
    await h.at(7.9)
    assert len(h.urls) == 3
    await h.at(8)
    assert h.stopped == ["http://127.0.0.1:9000"] and sorted(h.listed[-1]) == [
        "http://127.0.0.1:9001/v1", "http://127.0.0.1:9002/v1"]


async def test_a_queue_in_the_engines_adds_an_engine_with_target_waiting() -> None:
    policy = ScalePolicy(min_replicas=1, max_replicas=3, target=8, down_delay_s=5, idle_s=10,
                         target_waiting=2)
    h = Harness(policy)
    h.ready.set()
    await h.at(1, load=(4, 0, 4))  # 4 in flight is under one engine's 8, but 4 wait: 2 engines
    await asyncio.sleep(0.01)
    assert len(h.urls) == 2 and "waiting in the engines" in h.scaler.last_reason


async def test_an_engine_that_fails_to_start_is_retried_after_the_backoff() -> None:
    h = Harness(ZERO, running=0)
    h.fail = True
    h.ready.set()
    await h.at(1, load=(1, 1, 0))
    await asyncio.sleep(0.01)
    assert h.urls == [] and "exited with code 1" in h.scaler.state()
    await h.at(10)
    assert not h.scaler.starting  # within the backoff
    h.fail = False
    await h.at(32)
    await asyncio.sleep(0.01)
    assert len(h.urls) == 1 and h.scaler.failure == ""


async def test_engines_still_starting_are_stopped_with_the_scaler() -> None:
    h = Harness(ZERO, running=0)
    await h.at(1, load=(1, 1, 0))
    task = next(iter(h.scaler.starting.values()))
    await h.scaler.aclose()
    assert task.cancelled() and not h.scaler.starting


@pytest.mark.parametrize(("text", "expected"), [
    ("MemTotal: 100 kB\nMemAvailable:    2048 kB\n", 2048 * 1024), ("MemTotal: 100 kB\n", None), ("", None)])
def test_memory_available_reads_meminfo(tmp_path: Any, text: str, expected: int | None) -> None:
    path = tmp_path / "meminfo"
    path.write_text(text)
    assert memory_available(path) == expected
    assert memory_available(tmp_path / "absent") is None
