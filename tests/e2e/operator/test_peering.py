"""Peering: a paused operator does no work, kopf's nor its own (child changes, drift checks).

kopf pauses only its own watchers; the operator's child watch and drift pass are gated on the
same peering object by `aistack.operator.peering`. Each test has its own emulated cluster: the
peering object is cluster-wide, and a peer left in it would pause the other modules' operators.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator

import pytest

from aistack.operator.emulator import EmulatorThread
from aistack.operator.kube import CHILD_KINDS
from aistack.operator.peering import PeeringOptions
from aistack.operator.testing import Cluster, OperatorThread, wait_for

SERVICE = CHILD_KINDS["Service"]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with EmulatorThread() as thread:
        cluster = Cluster(thread)
        cluster.add_peering()
        yield cluster


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _paused(op: OperatorThread) -> bool:
    peering = op.runner.peering if op.runner else None
    return peering is not None and bool(peering.statuses) and not peering.active.is_set()


def _working(op: OperatorThread) -> bool:
    peering = op.runner.peering if op.runner else None
    return peering is not None and peering.active.is_set()


def test_a_paused_operator_leaves_child_changes_until_its_peer_is_gone(cluster, qdrant, namespace, stack_doc) -> None:
    """A higher-priority peer appears: the operator pauses, and a child deleted meanwhile is
    left alone (by the child watch and the 1 s drift pass alike) until the peer's keep-alive
    runs out; then the operator restores it."""
    with OperatorThread(cluster, qdrant, peering=PeeringOptions(priority=10), identity="under-test") as op:
        wait_for(lambda: _working(op), what="the operator working")
        cluster.apply_stack(stack_doc("quickstart", namespace, name="paused"))
        cluster.wait_phase(namespace, "paused", "Ready")
        lifetime = 4
        cluster.patch_peering({"intruder": {"priority": 20, "lifetime": lifetime, "lastseen": _now()}})
        gone_at = time.monotonic() + lifetime
        wait_for(lambda: _paused(op), what="the operator paused")
        assert op.runner is not None
        runs = op.runner.counters.runs
        cluster.kube.delete(SERVICE, namespace, "paused-gateway")
        time.sleep(2.0)  # two drift intervals and many debounce periods
        assert cluster.kube.get(SERVICE, namespace, "paused-gateway") is None
        assert op.runner.counters.runs == runs
        wait_for(lambda: cluster.kube.get(SERVICE, namespace, "paused-gateway"), timeout=lifetime + 10,
                 what="the Service restored once the peer is gone")
        assert time.monotonic() >= gone_at - 0.5
        assert _working(op)


def test_of_two_operators_only_the_higher_priority_one_works(cluster, qdrant, namespace, stack_doc) -> None:
    """Two real operators share the peering: the lower one stays paused while the higher one
    runs, and takes over when it stops (kopf removes its keep-alive on exit)."""
    with OperatorThread(cluster, qdrant, peering=PeeringOptions(priority=100), identity="primary") as primary:
        wait_for(lambda: _working(primary), what="the primary working")
        standby = OperatorThread(cluster, qdrant, peering=PeeringOptions(priority=0), identity="standby").start()
        try:
            wait_for(lambda: _paused(standby), what="the standby paused")
            cluster.apply_stack(stack_doc("quickstart", namespace, name="shared"))
            cluster.wait_phase(namespace, "shared", "Ready")
            cluster.kube.delete(SERVICE, namespace, "shared-gateway")
            wait_for(lambda: cluster.kube.get(SERVICE, namespace, "shared-gateway"), what="the Service restored")
            assert standby.runner is not None and standby.runner.counters.runs == 0
            assert set((cluster.peering() or {}).get("status") or {}) == {"primary", "standby"}
        except BaseException:
            standby.stop()
            raise
    try:
        wait_for(lambda: _working(standby), what="the standby taking over")
        assert set((cluster.peering() or {}).get("status") or {}) == {"standby"}
        cluster.kube.delete(SERVICE, namespace, "shared-gateway")
        wait_for(lambda: cluster.kube.get(SERVICE, namespace, "shared-gateway"), what="the Service restored")
        assert standby.runner is not None and standby.runner.counters.runs > 0
    finally:
        standby.stop()


def test_equal_priorities_pause_both(cluster, qdrant, namespace, stack_doc) -> None:
    """kopf's rule: two live operators of the same priority would fight, so both pause."""
    cluster.patch_peering({"twin": {"priority": 0, "lifetime": 60, "lastseen": _now()}})
    with OperatorThread(cluster, qdrant, peering=PeeringOptions(priority=0), identity="under-test") as op:
        wait_for(lambda: _paused(op), what="the operator paused")
        cluster.apply_stack(stack_doc("quickstart", namespace, name="twins"))
        time.sleep(1.5)
        assert cluster.children(namespace, "twins") == {}
        cluster.patch_peering({"twin": None})  # the twin says goodbye
        cluster.wait_phase(namespace, "twins", "Ready")
