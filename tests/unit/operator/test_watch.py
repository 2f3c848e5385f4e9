"""The children's watch cache against a scripted API server: list, watch, 410 Gone, relist.

The emulator-driven e2e tests exercise the happy path; the API server behaviours the emulator
does not produce (a compacted resourceVersion, an ERROR event, a stream that ends, a list with
`continue`) are scripted here with a small aiohttp server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from aiohttp import web
from kubernetes.client import Configuration

from aistack.operator.kube import AISTACK, CHILD_KINDS
from aistack.operator.watch import SELECTOR, Change, ChildCache, StackCache

SERVICES = CHILD_KINDS["Service"]
LABELS = {"app.kubernetes.io/instance": "shop", "app.kubernetes.io/managed-by": "aistack-operator"}


def service(name: str, version: int, *, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "apps", "resourceVersion": str(version),
                         "labels": LABELS if labels is None else labels}, "spec": {}}


class ScriptedServer:
    """Lists answer from `lists` in turn (then the last one); watches from `watches` in turn,
    each a list of events sent and then the stream closed."""

    def __init__(self, lists: list[list[dict[str, Any]]], watches: list[list[dict[str, Any]] | int]) -> None:
        self.lists, self.watches = lists, watches
        self.requests: list[dict[str, str]] = []
        self.list_count = self.watch_count = 0
        self.closing = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.query))
        if request.headers.get("Authorization") != "Bearer sesame":
            return web.json_response({"kind": "Status", "code": 401}, status=401)
        if request.query.get("watch") != "true":
            items = self.lists[min(self.list_count, len(self.lists) - 1)]
            self.list_count += 1
            version = max([int(i["metadata"]["resourceVersion"]) for i in items] or [1])
            return web.json_response({"kind": "ServiceList", "metadata": {"resourceVersion": str(version)},
                                      "items": items})
        script = self.watches[self.watch_count] if self.watch_count < len(self.watches) else []
        self.watch_count += 1
        if isinstance(script, int):
            return web.json_response({"kind": "Status", "code": script}, status=script)
        response = web.StreamResponse()
        await response.prepare(request)
        for event in script:
            await response.write(json.dumps(event).encode() + b"\n")
        if self.watch_count > len(self.watches):
            with contextlib.suppress(TimeoutError):  # the script is over: an idle, open stream
                await asyncio.wait_for(self.closing.wait(), 30)
        return response


async def start(server: ScriptedServer) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/api/v1/services", server.handle)
    app.router.add_get(f"/apis/{AISTACK.api_version}/{AISTACK.plural}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def configuration(host: str) -> Configuration:
    config = Configuration(host=host)
    config.api_key = {"authorization": "Bearer sesame"}
    return config


async def run_cache(server: ScriptedServer, until) -> tuple[ChildCache, list[Change]]:
    runner, host = await start(server)
    changes: list[Change] = []
    cache = ChildCache(configuration=configuration(host), kinds=[SERVICES], on_change=changes.append)
    try:
        await cache.start()
        await cache.wait_synced(5)
        for _ in range(200):
            if until(cache, changes):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"condition not reached; changes: {changes}")
        return cache, changes
    finally:
        await cache.stop()
        server.closing.set()
        await runner.cleanup()


async def test_list_then_watch_keeps_summaries_by_stack_and_reports_changes() -> None:
    server = ScriptedServer(
        lists=[[service("shop-gateway", 5), service("stranger", 6, labels={"app": "x"})]],
        watches=[[{"type": "MODIFIED", "object": service("shop-gateway", 7)},
                  {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "8"}}},
                  {"type": "ADDED", "object": service("shop-model", 9)},
                  {"type": "DELETED", "object": service("shop-gateway", 10)}]])
    cache, changes = await run_cache(server, lambda c, ch: len(ch) >= 4)
    assert [(c.name, c.version) for c in changes] == [
        ("shop-gateway", "5"), ("shop-gateway", "7"), ("shop-model", "9"), ("shop-gateway", None)]
    assert set(cache.children(("apps", "shop"))) == {("Service", "shop-model")}
    summary = cache.children(("apps", "shop"))[("Service", "shop-model")]
    assert summary["kind"] == "Service" and summary["metadata"]["resourceVersion"] == "9"
    listing, watch = server.requests[0], server.requests[1]
    assert listing["labelSelector"] == SELECTOR and watch["resourceVersion"] == "6"
    assert watch["allowWatchBookmarks"] == "true"
    assert server.requests[2]["resourceVersion"] == "10"  # the stream ended: resumed from the last version


async def test_gone_lists_again_and_notices_what_was_deleted_meanwhile() -> None:
    server = ScriptedServer(
        lists=[[service("shop-gateway", 5), service("shop-model", 6)], [service("shop-model", 12)]],
        watches=[[{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}]])
    cache, changes = await run_cache(server, lambda c, ch: server.list_count >= 2 and len(ch) >= 4)
    assert server.list_count >= 2
    assert set(cache.children(("apps", "shop"))) == {("Service", "shop-model")}
    assert Change(stack=("apps", "shop"), kind="Service", name="shop-gateway", version=None) in changes
    assert Change(stack=("apps", "shop"), kind="Service", name="shop-model", version="12") in changes


async def test_a_refused_watch_backs_off_and_lists_again() -> None:
    server = ScriptedServer(lists=[[service("shop-gateway", 5)]], watches=[500])
    cache, _ = await run_cache(server, lambda c, ch: server.list_count >= 2)
    assert set(cache.children(("apps", "shop"))) == {("Service", "shop-gateway")}


async def test_without_credentials_it_never_reports_synced() -> None:
    server = ScriptedServer(lists=[[service("shop-gateway", 5)]], watches=[])
    runner, host = await start(server)
    cache = ChildCache(configuration=Configuration(host=host), kinds=[SERVICES])
    try:
        await cache.start()
        with pytest.raises(TimeoutError):
            await cache.wait_synced(0.5)
        assert cache.children(("apps", "shop")) == {}
    finally:
        await cache.stop()
        await runner.cleanup()


def aistack(name: str, version: int, *, image: str = "v1") -> dict[str, Any]:
    return {"apiVersion": AISTACK.api_version, "kind": AISTACK.kind,
            "metadata": {"name": name, "namespace": "apps", "resourceVersion": str(version),
                         "managedFields": [{}],
                         "annotations": {"kopf.zalando.org/last-handled-configuration": "{...}",
                                         "team": "search"}},
            "spec": {"image": image}}


async def test_stack_cache_keeps_slim_bodies_unfiltered_and_drops_deleted_stacks() -> None:
    server = ScriptedServer(
        lists=[[aistack("shop", 5), aistack("blog", 6)]],
        watches=[[{"type": "MODIFIED", "object": aistack("shop", 7, image="v2")},
                  {"type": "DELETED", "object": aistack("blog", 8)}]])
    runner, host = await start(server)
    stacks = StackCache(configuration=configuration(host))
    try:
        await stacks.start()
        await stacks.wait_synced(5)
        for _ in range(200):
            if stacks.get(("apps", "blog")) is None and server.watch_count >= 1:
                break
            await asyncio.sleep(0.02)
        shop = stacks.get(("apps", "shop"))
        assert shop is not None and shop["spec"] == {"image": "v2"}
        assert shop["metadata"]["annotations"] == {"team": "search"}  # kopf's copy of the spec left out
        assert "managedFields" not in shop["metadata"]
        assert stacks.get(("apps", "blog")) is None
        assert "labelSelector" not in server.requests[0]  # every AIStack, not only labelled ones
    finally:
        await stacks.stop()
        server.closing.set()
        await runner.cleanup()
