"""`aistack up` takes the engine's load for its panel from the gateway's own reads of the model's
/metrics: here a spec's vLLM reached with --model-url, stood in for by the fake upstream serving a
page recorded from vLLM 0.32.0."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from aistack.runtime.gateway.engine_metrics import EngineLoad
from aistack.runtime.local.ports import free_port
from aistack.runtime.local.runner import LocalStack, UpOptions
from aistack.testing.openai_server import run_openai_server

PAGE = (Path(__file__).parents[1] / "gateway" / "vllm_metrics" / "0.32.0-busy.txt").read_text()


async def wait_until(done: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def test_the_panel_shows_the_engines_load_from_the_first_print_and_drops_it_when_it_goes(
        tmp_path: Path) -> None:
    manifest = tmp_path / "stack.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s"},
        "spec": {"model": {"provider": "vllm", "name": "m", "vllm": {"gpu": {"count": 1}}}}}))
    loads: list[EngineLoad | None] = []
    with run_openai_server(models=["m"], metrics_page=PAGE) as engine:
        local = LocalStack(manifest, UpOptions(port=free_port(), state=tmp_path / "state",
                                               model_url=f"http://{engine.host}:{engine.port}/v1",
                                               engine="transformers"),
                           on_status=lambda status: loads.append(status.engine_load))
        running = asyncio.create_task(local.run())
        try:
            await wait_until(lambda: bool(loads), 60, "aistack up did not publish its status")
            first = loads[0]
            assert isinstance(first, EngineLoad) and (first.running, first.prefix_cache_hits) == (6, 256)
            engine.configure(metrics_page=None)  # 404 from now on: no engine metrics
            await wait_until(lambda: loads[-1] is None, 20, f"the load stayed: {loads}")
        finally:
            local.request_stop()
            await asyncio.wait_for(running, timeout=30)
