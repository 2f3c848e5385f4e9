"""kopf's peering rule as the operator's own triggers apply it (`aistack.operator.machinery.peering`)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime

from kubernetes.client import Configuration

from aistack.operator.machinery.peering import (CLUSTER, NAMESPACED_PEERING, PeeringOptions, PeeringWatch,
                                                blocking_peers, own_identity)
from aistack.operator.machinery.listwatch import NotServed

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def _entry(priority: int, *, ago: float = 0, lifetime: int = 60) -> dict[str, object]:
    return {"priority": priority, "lifetime": lifetime,
            "lastseen": (NOW - datetime.timedelta(seconds=ago)).isoformat()}


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
    assert _blocking({"z": {"priority": 20, "lifetime": 60,
                            "lastseen": "2026-11-26T11:58:00+00:00"}}) == set()
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
                             options=PeeringOptions(priority=10), identity="me",
                             on_resume=lambda: seen.append("resumed"))
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
        assert watch._key(NAMESPACED_PEERING, {"metadata": {"name": "other", "namespace": "a"}}) is None
        watch._keep("a", {"metadata": {"name": "aistack", "namespace": "a"}, "status": {}})
        assert not watch.active.is_set()
        watch._keep("b", {"metadata": {"name": "aistack", "namespace": "b"}, "status": {}})
        assert watch.active.is_set()

    asyncio.run(scenario())


def test_without_a_named_peering_a_peer_in_one_namespace_pauses_though_another_has_no_object() -> None:
    """kopf pauses on a blocking peer in any watched namespace; a namespace without the peering
    object does not make the operator work past it."""
    async def scenario() -> None:
        watch = PeeringWatch(configuration=Configuration(), namespaces=["a", "b"], options=PeeringOptions(),
                             identity="me")
        watch._listed.update({("kopfpeerings", "a"), ("kopfpeerings", "b")})
        watch._keep("a", {"metadata": {"name": "aistack", "namespace": "a"}, "status": {"boss": _live(20)}})
        assert not watch.active.is_set()
        watch._keep("a", {"metadata": {"name": "aistack", "namespace": "a"}, "status": {}})
        assert watch.active.is_set()  # b still has none: working without peering there

    asyncio.run(scenario())


def _live(priority: int, *, lifetime: int = 60) -> dict[str, object]:
    return {"priority": priority, "lifetime": lifetime,
            "lastseen": datetime.datetime.now(datetime.UTC).isoformat()}


def _listings(watch: PeeringWatch, answers: list[object]) -> None:
    """Feed the watch's listings: each answer a list body, or an exception to raise."""
    async def get(*_: object) -> object:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    watch._get = get  # type: ignore[method-assign]  # the fake API server's answers, in order


EMPTY = {"items": [], "metadata": {"resourceVersion": "7"}}


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aistack.operator.peering"
            and r.levelname == "WARNING"]


def test_a_named_peering_without_its_object_pauses_and_says_what_to_create(caplog) -> None:
    """`--peering aistack` and the object is missing (never created): the operator stays
    paused, as kopf does with a named peering, and says which object to create, once per
    listing that finds it missing, not on every event."""
    async def scenario() -> None:
        watch = PeeringWatch(configuration=Configuration(), namespaces=[],
                             options=PeeringOptions(mandatory=True), identity="me")
        _listings(watch, [EMPTY])
        kind = watch.streams[0][0]
        assert await watch._list(kind, None) == "7"
        await watch._list(kind, None)
        assert not watch.active.is_set()

    with caplog.at_level("WARNING", logger="aistack.operator.peering"):
        asyncio.run(scenario())
    [message] = _warnings(caplog)
    assert "paused, no ClusterKopfPeering 'aistack' in the cluster" in message
    assert "kubectl apply -f deploy/operator/peering.yaml" in message and "--standalone" in message


def test_without_a_named_peering_a_missing_object_or_crd_means_working_with_one_warning_each(caplog) -> None:
    """No `--peering`: the CRD not served (404, listed again every `recheck`) and then the
    object missing both let the operator work; each state is told once, however often it is
    listed; once the object exists its peers count again."""
    async def scenario() -> list[str]:
        seen: list[str] = []
        watch = PeeringWatch(configuration=Configuration(), namespaces=[], options=PeeringOptions(recheck=0),
                             identity="me", on_resume=lambda: seen.append("resumed"))
        kind = watch.streams[0][0]
        _listings(watch, [NotServed("404"), NotServed("404"), NotServed("404"), EMPTY])
        assert await watch._list(kind, None) == "7"  # returns once the CRD is served
        assert watch.active.is_set() and watch.unserved == set()
        await watch._list(kind, None)
        assert watch.active.is_set() and seen == ["resumed"]
        watch._keep(CLUSTER, {"metadata": {"name": "aistack"}, "status": {"boss": _live(20)}})
        assert not watch.active.is_set()
        return seen

    with caplog.at_level("WARNING", logger="aistack.operator.peering"):
        asyncio.run(scenario())
    crd, obj, paused = _warnings(caplog)
    assert crd.startswith(
        "peering: no ClusterKopfPeering CRD (clusterkopfpeerings.kopf.dev) installed: working")
    assert obj.startswith("peering: no ClusterKopfPeering 'aistack' in the cluster: working without peering")
    for message in (crd, obj):
        assert "kubectl apply -f deploy/operator/peering.yaml" in message and "--standalone" in message
    assert paused == "peering: paused, peers boss (priority 20)"


def test_a_named_peering_without_its_crd_stays_paused_and_names_the_crd_and_the_object(caplog) -> None:
    async def scenario() -> None:
        watch = PeeringWatch(configuration=Configuration(), namespaces=["team-a"],
                             options=PeeringOptions(name="team", mandatory=True, recheck=0), identity="me")
        _listings(watch, [NotServed("404")])
        kind = watch.streams[0][0]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watch._list(kind, "team-a"), 0.2)  # lists again until the CRD is served
        assert not watch.active.is_set() and watch.unserved == {"team-a"}

    with caplog.at_level("WARNING", logger="aistack.operator.peering"):
        asyncio.run(scenario())
    [message] = _warnings(caplog)
    assert message == ("peering: paused, no KopfPeering CRD (kopfpeerings.kopf.dev) installed; "
                       "--peering team waits for the KopfPeering 'team' (install its CRD with kubectl apply "
                       "-f deploy/operator/peering.yaml, then create KopfPeering 'team' in each namespace, "
                       "or run with --standalone)")
