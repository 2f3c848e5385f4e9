"""kopf's peering rule as the operator's own triggers apply it (`aistack.operator.peering`)."""

from __future__ import annotations

import asyncio
import datetime

from kubernetes.client import Configuration

from aistack.operator.peering import CLUSTER, PeeringOptions, PeeringWatch, blocking_peers, own_identity

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def _entry(priority: int, *, ago: float = 0, lifetime: int = 60) -> dict[str, object]:
    return {"priority": priority, "lifetime": lifetime, "lastseen": (NOW - datetime.timedelta(seconds=ago)).isoformat()}


def _blocking(status: dict[str, object], priority: int = 10) -> set[str]:
    return {p.identity for p in blocking_peers(status, identity="me", priority=priority, now=NOW)}


def test_higher_and_equal_live_peers_pause_lower_and_dead_ones_do_not() -> None:
    status = {"me": _entry(10), "higher": _entry(20), "twin": _entry(10), "lower": _entry(5),
              "dead": _entry(99, ago=61), "said-goodbye": _entry(99, lifetime=0)}
    assert _blocking(status) == {"higher", "twin"}
    assert _blocking({"me": _entry(10), "lower": _entry(5)}) == set()
    assert _blocking({}) == set()


def test_kopf_timestamps_and_unreadable_entries() -> None:
    """kopf writes `lastseen` as an ISO time with an offset; an entry that cannot be read
    counts as a live peer of priority 0: it pauses an operator of priority 0, none above."""
    assert _blocking({"z": {"priority": 20, "lifetime": 60, "lastseen": "2026-11-26T11:59:30Z"}}) == {"z"}
    assert _blocking({"z": {"priority": 20, "lifetime": 60, "lastseen": "2026-11-26T11:58:00+00:00"}}) == set()
    garbage = {"odd": {"priority": "high", "lastseen": "yesterday"}, "none": None}
    assert {p.identity for p in blocking_peers(garbage, identity="me", priority=0)} == {"odd", "none"}
    assert {p.identity for p in blocking_peers(garbage, identity="me", priority=1)} == set()


def test_identity_is_the_pod_name_when_given(monkeypatch) -> None:
    monkeypatch.setenv("POD_ID", "aistack-operator-7d9f-x2")
    assert own_identity() == "aistack-operator-7d9f-x2"
    monkeypatch.delenv("POD_ID")
    first, second = own_identity(), own_identity()
    assert "@" in first and first != second  # two local operators never share one


def test_watch_pauses_until_read_and_while_a_peer_outranks_it_then_resumes_on_expiry() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []
        watch = PeeringWatch(configuration=Configuration(), namespaces=[],
                             options=PeeringOptions(priority=10), identity="me", on_resume=lambda: seen.append("resumed"))
        assert not watch.active.is_set()  # nothing read yet: paused, as kopf is
        watch._keep(CLUSTER, {"metadata": {"name": "aistack"}, "status": {"me": _live(10)}})
        assert watch.active.is_set() and seen == ["resumed"]
        watch._keep(CLUSTER, {"metadata": {"name": "aistack"},
                              "status": {"me": _live(10), "boss": _live(20, lifetime=1)}})
        assert not watch.active.is_set()
        await asyncio.wait_for(watch.active.wait(), 3)  # the boss's keep-alive runs out
        assert seen == ["resumed", "resumed"]
        watch._drop(CLUSTER)  # the peering object deleted: paused again
        assert not watch.active.is_set()
        return seen

    asyncio.run(scenario())


def test_namespaced_operator_needs_every_namespace_peering() -> None:
    async def scenario() -> None:
        watch = PeeringWatch(configuration=Configuration(), namespaces=["a", "b"],
                             options=PeeringOptions(), identity="me")
        assert watch._key(None, {"metadata": {"name": "other", "namespace": "a"}}) is None  # type: ignore[arg-type]
        watch._keep("a", {"metadata": {"name": "aistack", "namespace": "a"}, "status": {}})
        assert not watch.active.is_set()
        watch._keep("b", {"metadata": {"name": "aistack", "namespace": "b"}, "status": {}})
        assert watch.active.is_set()

    asyncio.run(scenario())


def _live(priority: int, *, lifetime: int = 60) -> dict[str, object]:
    return {"priority": priority, "lifetime": lifetime, "lastseen": datetime.datetime.now(datetime.UTC).isoformat()}


def test_a_listing_without_the_peering_object_says_what_to_do(caplog) -> None:
    """The object is missing (never created): the operator stays paused, as kopf does, and
    says which object to create, once per listing that finds it missing, not on every event."""
    async def scenario() -> None:
        watch = PeeringWatch(configuration=Configuration(), namespaces=[], options=PeeringOptions(), identity="me")

        async def empty(*_: object) -> dict[str, object]:
            return {"items": [], "metadata": {"resourceVersion": "7"}}

        watch._get = empty  # type: ignore[method-assign]
        kind = watch.streams[0][0]
        assert await watch._list(kind, None) == "7"
        await watch._list(kind, None)
        assert not watch.active.is_set()

    with caplog.at_level("WARNING", logger="aistack.operator.peering"):
        asyncio.run(scenario())
    [message] = [r.getMessage() for r in caplog.records]
    assert "no ClusterKopfPeering 'aistack' in the cluster" in message and "--standalone" in message
