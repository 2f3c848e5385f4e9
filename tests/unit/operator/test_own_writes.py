"""The operator's own writes laid over a lagging watch cache (`ChildCache.record`,
`ChildCache.with_own_writes`), and their echoes told from other changes."""

from __future__ import annotations

from typing import Any

from kubernetes.client import Configuration

from aistack.operator.apply import ApplyResult
from aistack.operator.watch import Change, ChildCache

STACK = ("apps", "shop")
CHILD = ("Service", "shop-gateway")
LABELS = {"app.kubernetes.io/instance": "shop", "app.kubernetes.io/managed-by": "aistack-operator"}


def obj(version: str, *, ready: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": "shop-gateway", "namespace": "apps",
                                         "resourceVersion": version,
                                         "labels": LABELS}}
    if ready is not None:
        body["status"] = {"readyReplicas": ready}
    return body


def cache() -> tuple[ChildCache, list[Change]]:
    heard: list[Change] = []
    return ChildCache(configuration=Configuration(host="http://127.0.0.1:1"), on_change=heard.append), heard


def test_a_created_child_counts_as_live_until_the_cache_shows_it() -> None:
    c, _ = cache()
    c.record(STACK, ApplyResult(live={CHILD: obj("7")}, created=[CHILD]), read={})
    live = c.with_own_writes(STACK, {})
    assert live[CHILD]["metadata"]["resourceVersion"] == "7"  # not created a second time
    cached = {CHILD: obj("7", ready=1)}
    assert c.with_own_writes(STACK, cached) == cached  # the echo arrived: the cache is the truth
    assert STACK not in c.written or CHILD not in c.written[STACK]


def test_a_patched_child_overrides_the_older_cached_version_only() -> None:
    c, _ = cache()
    before = {CHILD: obj("3")}
    c.record(STACK, ApplyResult(live={CHILD: obj("8")}, patched=[CHILD]), read=before)
    assert c.with_own_writes(STACK, before)[CHILD]["metadata"]["resourceVersion"] == "8"
    edited = {CHILD: obj("9")}  # someone edited it after us (our echo was coalesced away)
    assert c.with_own_writes(STACK, edited)[CHILD]["metadata"]["resourceVersion"] == "9"


def test_deletion_or_a_newer_event_drops_the_overlay_at_once() -> None:
    c, _ = cache()
    c._keep((STACK, CHILD), obj("7"))  # our create's event, before the reconcile recorded the write
    c.record(STACK, ApplyResult(live={CHILD: obj("7")}, created=[CHILD]), read={})
    assert CHILD in c.with_own_writes(STACK, {})
    c._drop((STACK, CHILD))  # deleted by hand
    assert STACK not in c.written
    assert c.with_own_writes(STACK, {}) == {}  # it will be created again
    c.record(STACK, ApplyResult(live={CHILD: obj("10")}, created=[CHILD]), read={})
    c._keep((STACK, CHILD), obj("10"))  # our echo
    assert STACK not in c.written


def test_the_echo_of_an_own_write_is_not_a_change_but_a_later_edit_is() -> None:
    c, heard = cache()
    c.record(STACK, ApplyResult(live={CHILD: obj("7")}, created=[CHILD]), read={})
    c._keep((STACK, CHILD), obj("7"))
    assert heard == []
    c._keep((STACK, CHILD), obj("8"))
    assert heard == [Change(stack=STACK, kind="Service", name="shop-gateway", version="8")]
    c._drop((STACK, CHILD))
    assert heard[-1].version is None


def test_a_forgotten_stack_leaves_no_writes_and_no_echoes() -> None:
    c, heard = cache()
    c.record(STACK, ApplyResult(live={CHILD: obj("7")}, created=[CHILD]), read={})
    c.forget(STACK)
    assert c.with_own_writes(STACK, {}) == {} and not c.echoes
    c._keep((STACK, CHILD), obj("7"))  # no longer known as ours
    assert [change.version for change in heard] == ["7"]
