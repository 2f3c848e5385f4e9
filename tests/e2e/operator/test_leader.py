"""Leader election between replicas (a Lease), with peering on as deployed: replicas of one
Deployment share a priority, so without the Lease kopf peering would pause them all.

Each test has its own emulated cluster (the peering object and the Lease are shared state).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator

import httpx
import pytest

from aistack.operator.kube import CHILD_KINDS
from aistack.operator.machinery.leader import LEASE, LeaderElection, LeaseOptions
from aistack.operator.machinery.peering import PeeringOptions
from aistack.operator.run import LeadershipLost
from aistack.runtime.local.ports import free_port
from aistack.testing.cluster import Cluster, OperatorThread, wait_for
from aistack.testing.emulator import EmulatorThread

SERVICE = CHILD_KINDS["Service"]
SYSTEM = "aistack-system"
FAST = LeaseOptions(namespace=SYSTEM, duration=3, renew_deadline=2, retry_period=0.2)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with EmulatorThread() as thread:
        cluster = Cluster(thread)
        cluster.add_peering()
        cluster.add_namespace(SYSTEM)
        yield cluster


def _replica(cluster: Cluster, qdrant, identity: str, liveness: str | None = None) -> OperatorThread:
    return OperatorThread(cluster, qdrant, peering=PeeringOptions(priority=100, mandatory=True),
                          identity=identity,
                          leader=FAST, liveness=liveness)


def _lease(cluster: Cluster) -> dict:
    return (cluster.kube.get(LEASE, SYSTEM, FAST.name) or {}).get("spec") or {}


def test_only_the_lease_holder_runs_and_a_follower_takes_over_on_release(cluster, qdrant, namespace,
                                                                         stack_doc) -> None:
    first = _replica(cluster, qdrant, "replica-a").start()
    probe = f"http://127.0.0.1:{free_port()}/healthz"
    second = _replica(cluster, qdrant, "replica-b", liveness=probe)
    try:
        second.start(wait_ready=False)
        # A follower is alive (its probe answers) though it does not lead.
        assert wait_for(lambda: _probe(probe), what="the follower's probe") == {"leader": False}
        cluster.apply_stack(stack_doc("quickstart", namespace, name="elected"))
        cluster.wait_phase(namespace, "elected", "Ready")
        time.sleep(0.5)  # a few of the follower's tries
        assert _lease(cluster)["holderIdentity"] == "replica-a"
        assert not second.ready_flag.is_set()  # the follower never started kopf
        assert set((cluster.peering() or {}).get("status") or {}) == {"replica-a"}  # nor joined the peering
        first.stop()  # a clean stop hands the Lease back
        assert second.ready_flag.wait(10), "the follower did not take over"
        lease = _lease(cluster)
        assert (lease["holderIdentity"], lease["leaseTransitions"]) == ("replica-b", 1)
        cluster.kube.delete(SERVICE, namespace, "elected-gateway")
        wait_for(lambda: cluster.kube.get(SERVICE, namespace, "elected-gateway"),
                 what="the new leader restoring")
        assert second.runner is not None and second.runner.counters.runs > 0
        assert "reconciles" in _probe(probe)  # kopf's own probe took the port over
    finally:
        if first.thread.is_alive():
            first.stop()
        second.stop()


def _probe(url: str) -> dict | None:
    try:
        response = httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def test_a_lease_left_by_a_crashed_leader_is_taken_once_it_runs_out(cluster, qdrant) -> None:
    """A leader killed without releasing: its Lease stays until no renewal has been seen for
    the Lease's duration, measured on the follower's own clock."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    cluster.kube.create(LEASE, SYSTEM, {"apiVersion": LEASE.api_version, "kind": LEASE.kind,
                                        "metadata": {"name": FAST.name},
                                        "spec": {"holderIdentity": "crashed", "leaseDurationSeconds": 2,
                                                 "acquireTime": now, "renewTime": now,
                                                 "leaseTransitions": 3}})
    started = time.monotonic()
    survivor = _replica(cluster, qdrant, "survivor").start(wait_ready=False)
    try:
        assert survivor.ready_flag.wait(10)
        assert time.monotonic() - started >= 1.8
        assert (_lease(cluster)["holderIdentity"], _lease(cluster)["leaseTransitions"]) == ("survivor", 4)
    finally:
        survivor.stop()


def test_a_leader_that_cannot_renew_steps_down(cluster, qdrant) -> None:
    """Another candidate took the Lease (say, across a partition that outlasted the lease):
    the leader's renewals fail, and after the renew deadline it stops its operator."""
    leader = _replica(cluster, qdrant, "partitioned").start()
    try:
        lease = cluster.kube.get(LEASE, SYSTEM, FAST.name)
        assert lease is not None
        cluster.kube.patch(LEASE, SYSTEM, FAST.name,
                           {"spec": {"holderIdentity": "usurper", "renewTime": lease["spec"]["renewTime"]}})
        leader.thread.join(10)
        assert not leader.thread.is_alive(), "the leader kept running without its Lease"
        assert isinstance(leader.error, LeadershipLost)
        assert _lease(cluster)["holderIdentity"] == "usurper"  # stepping down released nothing of another's
    finally:
        if leader.thread.is_alive():
            leader.stop()


def test_two_candidates_racing_for_the_lease_cannot_both_win(cluster) -> None:
    """Every write carries what it read: a second create gets 409, and so does a takeover
    written from a Lease version that has moved on meanwhile."""
    first, second = LeaderElection(cluster.kube, FAST, "first"), LeaderElection(cluster.kube, FAST, "second")
    assert first.try_acquire_or_renew()
    assert not second._create()  # it read "absent" too, but created second
    read_by_second = cluster.kube.get(LEASE, SYSTEM, FAST.name)
    assert first.try_acquire_or_renew()  # a renewal moves the version on
    assert not second._patch(read_by_second, {"holderIdentity": "second"})
    assert _lease(cluster)["holderIdentity"] == "first"
    assert not second.try_acquire_or_renew()  # and, read afresh, it is held and renewed
