"""`aistack up` honours `spec.model.vllm.autoscaling` with the real vLLM engine (in this process, so
the panel's status is read as it is published): with `minReplicas: 0` the idle engine stops after
`idleSeconds` (its process group gone: its memory freed), then a plain request and a stream arrive
together, both are held by the gateway while an engine starts (the stream gets SSE keep-alive
comments meanwhile), and both are answered; the panel says `scaled to zero`, then `starting`, then
serving. And a load over one engine's target starts a second engine, which the gateway routes to,
and stops it once idle. Idle windows are seconds here, not the spec's defaults."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from aistack.runtime.engine.locate import EngineLocation
from aistack.runtime.local.offline_model import OFFLINE_MODEL_NAME
from aistack.runtime.local.offline_weights import is_prepared, weights_folder
from aistack.runtime.local.ports import free_port
from aistack.runtime.local.runner import LocalStack, UpOptions

pytestmark = pytest.mark.slow
ENGINE_ARGV = "vllm.entrypoints.openai.api_server"
IDLE_S = 6


def engine_pids() -> list[int]:
    """The vLLM API servers this process started (each leads its own process group)."""
    found = subprocess.run(["pgrep", "-P", str(os.getpid()), "-f", ENGINE_ARGV], capture_output=True,
                           text=True).stdout.split()
    return [int(pid) for pid in found]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_until(done: Callable[[], bool], timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not done():
        assert time.monotonic() - started < timeout_s, what
        await asyncio.sleep(0.2)
    return time.monotonic() - started


def body(*, stream: bool = False) -> dict[str, object]:
    return {"model": OFFLINE_MODEL_NAME, "temperature": 0, "max_tokens": 8, "stream": stream,
            "messages": [{"role": "user", "content": "Say hello."}]}


async def read_stream(client: httpx.AsyncClient, url: str) -> list[tuple[float, str]]:
    """Each line of a streamed answer with when it came (seconds after the request)."""
    lines: list[tuple[float, str]] = []
    started = time.monotonic()
    async with client.stream("POST", url, json=body(stream=True)) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line:
                lines.append((time.monotonic() - started, line))
    return lines


@dataclass
class Up:
    local: LocalStack
    states: list[str]
    """The panel's `scaling` row at each publish."""
    seen: list[int]
    """Every engine (process group) seen: none may outlive the stop."""

    @property
    def url(self) -> str:
        return f"{self.local.status.gateway_url}/v1/chat/completions"

    def saw(self) -> list[int]:
        self.seen += [pid for pid in engine_pids() if pid not in self.seen]
        return engine_pids()


@contextlib.asynccontextmanager
async def aistack_up(tmp_path: Path, vllm: dict[str, object]) -> AsyncIterator[Up]:
    """`aistack up` (in this process) of a vLLM stack with `vllm`, ready; stopped after, with every
    engine's processes gone."""
    if not is_prepared(weights_folder()):
        pytest.skip(f"the offline weights are not prepared in {weights_folder()}: "
                    "run `aistack engine install`")
    manifest = tmp_path / "scaling.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "scaling"},
        "spec": {"model": {"provider": "vllm", "name": "HuggingFaceTB/SmolLM2-135M-Instruct",
                           "vllm": {"gpu": {"count": 1}, **vllm}},
                 "orchestration": {"timeouts": {"requestSeconds": 300, "modelSeconds": 300}}}}))
    up = Up(local=LocalStack(manifest, UpOptions(port=free_port(), state=tmp_path / "state", engine="vllm"),
                             on_status=lambda status: up.states.append(status.scaling)), states=[], seen=[])
    running = asyncio.create_task(up.local.run())
    try:
        await wait_until(lambda: bool(up.states) or running.done(), 600, "aistack up did not get ready")
        assert not running.done(), running.result()
        assert len(up.saw()) == 1
        yield up
    finally:
        up.local.request_stop()
        await asyncio.wait_for(running, timeout=120)
    # SIGKILL to each group at the stop: its processes are gone within moments
    await wait_until(lambda: not any(group_alive(pid) for pid in up.seen), 15,
                     "an engine outlived aistack up")


@pytest.mark.timeout(900)  # two engine starts (~25-60 s each on 2 cores) and the idle window
async def test_an_idle_engine_stops_and_a_held_request_starts_it_again(
        engine: EngineLocation, tmp_path: Path) -> None:
    scaling = {"minReplicas": 0, "maxReplicas": 1, "idleSeconds": IDLE_S, "scaleDownDelaySeconds": 1,
               "holdSeconds": 280}
    async with aistack_up(tmp_path, {"autoscaling": scaling}) as up, httpx.AsyncClient(timeout=300) as client:
        states, first_engine = up.states, up.seen[0]
        assert states[0].startswith("1 engine serving (autoscaling 0-1"), states
        first = await client.post(up.url, json=body())
        assert first.status_code == 200, first.text

        # idle: the engine stops, its whole process group (API server, EngineCore, worker) ends
        idle = await wait_until(lambda: not engine_pids(), IDLE_S + 60, f"the engine did not stop: {states}")
        assert idle >= IDLE_S - 1
        await wait_until(lambda: not group_alive(first_engine), 30, "the engine's processes outlived it")
        assert any(s.startswith("scaled to zero") for s in states), states

        # a request and a stream arrive: both held while an engine starts, then answered
        started = time.monotonic()
        streamed, plain = await asyncio.gather(read_stream(client, up.url), client.post(up.url, json=body()))
        took = time.monotonic() - started
        assert plain.status_code == 200, plain.text
        assert plain.json()["choices"][0]["message"]["content"]
        comments = [at for at, line in streamed if line.startswith(":")]
        data = [(at, line) for at, line in streamed if line.startswith("data:")]
        assert comments and data and comments[0] < data[0][0], streamed  # kept alive while held
        assert data[-1][1] == "data: [DONE]"
        assert len(up.saw()) == 1
        assert any(s.startswith("starting 1 engine") for s in states), states
        assert states[-1].startswith("1 engine serving"), states
        print(f"\nidle engine stopped after {idle:.1f} s; held requests answered {took:.1f} s after they "
              f"came (the engine's start); states: {states}")


# Opt-in: on a 2-core machine the second engine starts beside a first one that saturates the cores
# with long generations; it passed here in ~140 s twice, but in a quiet CI run of the whole suite the
# second engine's core hung for 4 minutes after its OpenMP binding (and again on the retry), so the
# test spent 641 s and failed. The scaler's decisions are covered with stand-in engines in
# tests/unit/runtime/local/test_engine_scaler.py; on a machine with cores to spare set the variable.
@pytest.mark.skipif(os.environ.get("AISTACK_SCALE_UP_ENGINE_TEST") != "1",
                    reason="AISTACK_SCALE_UP_ENGINE_TEST=1 runs it: two real engines under load want more "
                           "than 2 cores (see the comment above the test)")
@pytest.mark.timeout(900)  # a second engine's start (~25-60 s on 2 cores) while the first serves
async def test_a_load_over_one_engines_target_starts_a_second_and_idle_it_stops(
        engine: EngineLocation, tmp_path: Path) -> None:
    """targetRequests 1, maxReplicas 2: three long requests at once start a second engine (memory
    allowing: ~5 GiB available), which the gateway routes to once it is ready; the load gone, the
    count goes back to minReplicas (1) after the scale-down delay, and the stopped engine's
    processes are gone."""
    scaling = {"minReplicas": 1, "maxReplicas": 2, "targetRequests": 1, "scaleDownDelaySeconds": 3}
    story = {"model": OFFLINE_MODEL_NAME, "temperature": 0, "max_tokens": 400, "ignore_eos": True,
             "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}]}
    async with aistack_up(tmp_path, {"autoscaling": scaling, "routing": {"policy": "least-busy"}}) as up, \
            httpx.AsyncClient(timeout=300) as client:
        states = up.states

        async def until_two_serve() -> int:
            """Long requests, three at a time, until a second engine serves; how many were sent."""
            sent = 0
            while len(up.saw()) < 2 or not states[-1].startswith("2 engines serving"):
                answers = await asyncio.gather(*(client.post(up.url, json=story) for _ in range(3)))
                assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
                sent += 3
            return sent

        started = time.monotonic()
        sent = await asyncio.wait_for(until_two_serve(), 600)
        took = time.monotonic() - started
        short = {**story, "max_tokens": 64}
        answers = await asyncio.gather(*(client.post(up.url, json=short) for _ in range(4)))
        assert all(a.status_code == 200 for a in answers)  # over both engines now
        # idle: back to one engine after the delay, the other's process group gone
        down = await wait_until(lambda: len(engine_pids()) == 1, 60, f"no scale-down: {states}")
        assert states[-1].startswith("1 engine serving"), states
        await wait_until(lambda: sum(group_alive(pid) for pid in up.seen) == 1, 30,
                         "the stopped engine's processes outlived it")
        print(f"\na second engine served {took:.0f} s after the load began ({sent} long requests); back to "
              f"one engine {down:.1f} s after the load; states: {states}")
