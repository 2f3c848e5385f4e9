"""When the gateway reports the model's load to the autoscaler: at once from zero or for a held
request, otherwise only for a material change and at most once a second, and a last report of
nothing when it stops; against a real HTTP server on loopback standing in for the API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from aistack.api.model_load import LoadReport, report_key
from aistack.runtime.gateway import demand as demand_module
from aistack.runtime.gateway.demand import LeaseReporter

LEASE = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/s-model-load"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[str, list[tuple[float, dict[str, Any], str]]]]:
    """A stand-in API server recording each merge patch of the Lease (time, body, authorization)."""
    writes: list[tuple[float, dict[str, Any], str]] = []

    async def patch(request: web.Request) -> web.Response:
        assert request.content_type == "application/merge-patch+json"
        writes.append((asyncio.get_running_loop().time(), await request.json(),
                       request.headers.get("Authorization", "")))
        return web.json_response({"kind": "Lease"})

    app = web.Application()
    app.router.add_patch(LEASE, patch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", writes
    await runner.cleanup()


def reports(writes: list[tuple[float, dict[str, Any], str]]) -> list[tuple[int, int]]:
    out = []
    for _, body, _ in writes:
        report = LoadReport.decode(body["metadata"]["annotations"][report_key("gw-0")])
        assert report is not None
        out.append((report.demand, report.held))
    return out


async def test_writes_only_what_changes_a_replica_count(api, tmp_path: Path) -> None:
    url, writes = api
    (tmp_path / "token").write_text("projected-token\n")
    session = aiohttp.ClientSession()
    reporter = LeaseReporter(api=url, namespace="ns", lease="s-model-load", target=8, session=lambda: session,
                             pod="gw-0", token_dir=tmp_path)
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        reporter.update(1, 0)  # from zero: at once
        await asyncio.sleep(0.1)
        assert reports(writes) == [(1, 0)] and writes[0][0] - began < 0.1
        assert writes[0][2] == "Bearer projected-token"
        for n in (2, 3, 2, 3, 2):  # under half a replica's target (4): not worth a write
            reporter.update(n, 0)
        await asyncio.sleep(1.2)
        assert reports(writes) == [(1, 0)]
        reporter.update(6, 0)  # 5 more than written, over a second since the last write: at once
        await asyncio.sleep(1.2)
        assert reports(writes) == [(1, 0), (6, 0)]
        reporter.update(6, 1)  # a request starts waiting: at once
        await asyncio.sleep(0.1)
        assert reports(writes)[-1] == (6, 1)
        for n in range(7, 40):  # a burst: at most one write a second
            reporter.update(n, 1)
        await asyncio.sleep(0.5)
        assert len(writes) == 3
        await asyncio.sleep(0.8)
        assert reports(writes)[-1] == (39, 1) and len(writes) == 4
    finally:
        await reporter.aclose()
        await session.close()
    assert reports(writes)[-1] == (0, 0)  # gone: nothing left of its load


async def test_a_steady_load_is_reported_again_every_heartbeat(api, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    url, writes = api
    monkeypatch.setattr(demand_module, "HEARTBEAT_SECONDS", 0.3)
    session = aiohttp.ClientSession()
    reporter = LeaseReporter(api=url, namespace="ns", lease="s-model-load", target=8, session=lambda: session,
                             pod="gw-0", token_dir=tmp_path)
    try:
        reporter.update(3, 0)
        await asyncio.sleep(1.0)
        assert reports(writes)[:3] == [(3, 0)] * 3
        assert writes[0][2] == ""  # no token outside a pod: no Authorization header
        count = len(writes)
        reporter.update(0, 0)  # zero: written, and then nothing until the demand changes
        await asyncio.sleep(1.5)
        assert reports(writes)[-1] == (0, 0) and len(writes) == count + 1
    finally:
        await reporter.aclose()
        await session.close()


async def test_a_failing_api_is_retried_and_logged_once(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    session = aiohttp.ClientSession()
    reporter = LeaseReporter(api="http://127.0.0.1:9", namespace="ns", lease="s-model-load", target=8,
                             session=lambda: session, pod="gw-0", token_dir=tmp_path)
    try:
        reporter.update(1, 1)
        await asyncio.sleep(2.5)
        warnings = [r for r in caplog.records if "could not report" in r.getMessage()]
        assert len(warnings) == 1 and reporter.writes == 0
    finally:
        await reporter.aclose()
        await session.close()



@pytest.mark.parametrize("target_waiting", [4, None])
async def test_the_engines_queue_is_written_when_it_moves_by_half_a_target_waiting(
        api, tmp_path: Path, target_waiting: int | None) -> None:
    """With targetWaiting a queue change of half of it is written (the KV usage rides along);
    without, the queue rides along in the demand's writes but is never a write of its own."""
    url, writes = api
    session = aiohttp.ClientSession()
    reporter = LeaseReporter(api=url, namespace="ns", lease="s-model-load", target=8, session=lambda: session,
                             pod="gw-0", token_dir=tmp_path, target_waiting=target_waiting)
    try:
        reporter.update(3, 0, 0, 0.2)
        await asyncio.sleep(0.1)
        reporter.update(3, 0, 1, 0.3)  # under half of targetWaiting (2): not worth a write
        await asyncio.sleep(1.2)
        assert len(writes) == 1
        reporter.update(3, 0, 6, 0.97)
        await asyncio.sleep(0.2)
        last = LoadReport.decode(writes[-1][1]["metadata"]["annotations"][report_key("gw-0")])
        assert last is not None
        if target_waiting is None:
            assert len(writes) == 1
        else:
            assert (last.demand, last.waiting, last.kv) == (3, 6, 0.97)
    finally:
        await reporter.aclose()
        await session.close()
