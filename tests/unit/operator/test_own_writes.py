"""The operator's own writes laid over a lagging watch cache (`Runner.with_own_writes`)."""

from __future__ import annotations

from typing import Any

from kubernetes.client import Configuration

from aistack.operator.apply import ApplyResult
from aistack.operator.handlers import OperatorOptions, Runner
from aistack.operator.watch import Change, ChildCache, StackCache

STACK = ("apps", "shop")
CHILD = ("Service", "shop-gateway")


def obj(version: str, *, ready: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": "shop-gateway", "namespace": "apps", "resourceVersion": version}}
    if ready is not None:
        body["status"] = {"readyReplicas": ready}
    return body


def runner() -> Runner:
    options = OperatorOptions(configuration=Configuration(host="http://127.0.0.1:1"))
    return Runner(kube=None, options=options, cache=ChildCache(configuration=options.configuration),  # type: ignore[arg-type]
                  stacks=StackCache(configuration=options.configuration))


def test_a_created_child_counts_as_live_until_the_cache_shows_it() -> None:
    r = runner()
    r.remember_writes(STACK, {}, ApplyResult(live={CHILD: obj("7")}, created=[CHILD]))
    live = r.with_own_writes(STACK, {})
    assert live[CHILD]["metadata"]["resourceVersion"] == "7"  # not created a second time
    cached = {CHILD: obj("7", ready=1)}
    assert r.with_own_writes(STACK, cached) == cached  # the echo arrived: the cache is the truth
    assert STACK not in r.written or CHILD not in r.written[STACK]


def test_a_patched_child_overrides_the_older_cached_version_only() -> None:
    r = runner()
    before = {CHILD: obj("3")}
    r.remember_writes(STACK, before, ApplyResult(live={CHILD: obj("8")}, patched=[CHILD]))
    assert r.with_own_writes(STACK, before)[CHILD]["metadata"]["resourceVersion"] == "8"
    edited = {CHILD: obj("9")}  # someone edited it after us (our echo was coalesced away)
    assert r.with_own_writes(STACK, edited)[CHILD]["metadata"]["resourceVersion"] == "9"


def test_deletion_or_a_newer_event_drops_the_overlay_at_once() -> None:
    r = runner()
    r.remember_writes(STACK, {}, ApplyResult(live={CHILD: obj("7")}, created=[CHILD]))
    r.child_changed(Change(stack=STACK, kind="Service", name="shop-gateway", version=None))
    assert STACK not in r.written
    assert r.with_own_writes(STACK, {}) == {}  # deleted by hand: it will be created again
    r.remember_writes(STACK, {}, ApplyResult(live={CHILD: obj("10")}, created=[CHILD]))
    r.child_changed(Change(stack=STACK, kind="Service", name="shop-gateway", version="10"))  # our echo
    assert STACK not in r.written
