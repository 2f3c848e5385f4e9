"""Peering: a paused operator does no work, kopf's nor its own (child changes, drift checks).

kopf pauses only its own watchers; the operator's child watch and drift pass are gated on the
same peering object by `aistack.operator.machinery.peering`. Each test has its own emulated cluster: the
peering object is cluster-wide, and a peer left in it would pause the other modules' operators.
Peering is optional unless named (`--peering NAME`, `PeeringOptions(mandatory=True)`), for
kopf and the operator's own triggers alike.
"""

from __future__ import annotations

import datetime
import logging
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from aistack.operator.handlers import FINALIZER
from aistack.operator.kube import CHILD_KINDS
from aistack.operator.machinery.peering import INSTALL, PeeringOptions
from aistack.testing.cluster import Cluster, OperatorThread, wait_for
from aistack.testing.emulator import EmulatorThread

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


def test_a_paused_operator_leaves_child_changes_until_its_peer_is_gone(cluster, qdrant, namespace,
                                                                       stack_doc) -> None:
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
        standby = OperatorThread(cluster, qdrant, peering=PeeringOptions(priority=0),
                                 identity="standby").start()
        try:
            wait_for(lambda: _paused(standby), what="the standby paused")
            cluster.apply_stack(stack_doc("quickstart", namespace, name="shared"))
            cluster.wait_phase(namespace, "shared", "Ready")
            cluster.kube.delete(SERVICE, namespace, "shared-gateway")
            wait_for(lambda: cluster.kube.get(SERVICE, namespace, "shared-gateway"),
                     what="the Service restored")
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


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "aistack.operator.peering" and r.levelno >= logging.WARNING]


def _finalized(cluster: Cluster, namespace: str, name: str) -> bool:
    """kopf put its finalizer on the stack: kopf itself ran a handler (it was not paused)."""
    return FINALIZER in ((cluster.stack(namespace, name) or {}).get("metadata", {}).get("finalizers") or [])


def _peering_listings(cluster: Cluster) -> int:
    return sum(1 for method, path in list(cluster.emulator.log)
               if method == "GET" and path.endswith("/clusterkopfpeerings"))


@pytest.mark.parametrize("crds", [False, True], ids=["without-the-crds", "without-the-object"])
def test_without_a_named_peering_the_operator_works_and_warns_once(crds, qdrant, stack_doc, caplog) -> None:
    """No `--peering`: on a cluster without kopf's peering CRDs (or without the peering object),
    kopf and the operator both work, as kopf does with optional peering, and the operator warns
    once how to install the peering, however often it looks again for the CRD. The drift pass is
    off, so Ready and the finalizer come from kopf's own create handler."""
    with EmulatorThread(peering_crds=crds) as thread:
        cluster = Cluster(thread)
        cluster.add_namespace("unpeered")
        with caplog.at_level(logging.WARNING, logger="aistack.operator.peering"), \
                OperatorThread(cluster, qdrant, peering=PeeringOptions(recheck=0.2), drift_interval=300,
                               identity="under-test"):
            cluster.apply_stack(stack_doc("quickstart", "unpeered", name="unpeered"))
            cluster.wait_phase("unpeered", "unpeered", "Ready")
            assert _finalized(cluster, "unpeered", "unpeered")
            if not crds:
                listed = _peering_listings(cluster)
                wait_for(lambda: _peering_listings(cluster) >= listed + 3,
                         what="three more looks for the CRD")
    [warning] = _warnings(caplog)
    missing = "no ClusterKopfPeering CRD (clusterkopfpeerings.kopf.dev) installed" if not crds \
        else "no ClusterKopfPeering 'aistack' in the cluster"
    assert warning.startswith(f"peering: {missing}: working without peering")
    assert INSTALL in warning and "--standalone" in warning


def test_a_named_peering_without_the_crds_stays_paused_and_names_what_to_install(qdrant, stack_doc,
                                                                                 caplog) -> None:
    """`--peering aistack` (as the install runs) on a cluster without kopf's CRDs: kopf and the
    operator's own triggers stay paused (no handler, no child, no drift reconcile), and the
    operator says once what to install."""
    with EmulatorThread(peering_crds=False) as thread:
        cluster = Cluster(thread)
        cluster.add_namespace("named")
        with caplog.at_level(logging.WARNING, logger="aistack.operator.peering"), \
                OperatorThread(cluster, qdrant, peering=PeeringOptions(mandatory=True, recheck=0.2),
                               identity="under-test") as op:
            wait_for(lambda: op.runner and op.runner.peering and op.runner.peering.unserved,
                     what="the peering CRD found missing")
            cluster.apply_stack(stack_doc("quickstart", "named", name="waiting"))
            time.sleep(2.0)  # two drift intervals, many looks for the CRD
            assert cluster.children("named", "waiting") == {}
            assert not _finalized(cluster, "named", "waiting")
            assert op.runner is not None and op.runner.counters.runs == 0
    [warning] = _warnings(caplog)
    assert warning == ("peering: paused, no ClusterKopfPeering CRD (clusterkopfpeerings.kopf.dev) installed; "
                       f"--peering aistack waits for the ClusterKopfPeering 'aistack' ({INSTALL}, or run "
                       "with --standalone)")


def test_a_named_peering_waits_for_its_object_then_works(qdrant, stack_doc, caplog) -> None:
    """`--peering team-x` with the CRDs but no such object: paused, naming the object to create;
    once it is created, kopf and the operator work."""
    with EmulatorThread() as thread:
        cluster = Cluster(thread)
        cluster.add_namespace("named")
        with caplog.at_level(logging.WARNING, logger="aistack.operator.peering"), \
                OperatorThread(cluster, qdrant, peering=PeeringOptions(name="team-x", mandatory=True),
                               identity="under-test") as op:
            wait_for(lambda: _peering_listings(cluster), what="the peering listed")
            cluster.apply_stack(stack_doc("quickstart", "named", name="later"))
            time.sleep(1.5)
            assert cluster.children("named", "later") == {} and not _finalized(cluster, "named", "later")
            [warning] = _warnings(caplog)
            assert warning == ("peering: paused, no ClusterKopfPeering 'team-x' in the cluster; "
                               "--peering team-x waits for the ClusterKopfPeering 'team-x' "
                               "(create ClusterKopfPeering 'team-x', or run with --standalone)")
            cluster.add_peering("team-x")
            cluster.wait_phase("named", "later", "Ready")
            assert _finalized(cluster, "named", "later") and _working(op)


def test_an_optional_peering_counts_once_its_object_exists(qdrant, stack_doc) -> None:
    """No `--peering` and no object at first: working. The object then appears with a live peer
    of higher priority: kopf and the operator's own triggers both pause."""
    with EmulatorThread() as thread:
        cluster = Cluster(thread)
        cluster.add_namespace("optional")
        with OperatorThread(cluster, qdrant, peering=PeeringOptions(), identity="under-test") as op:
            cluster.apply_stack(stack_doc("quickstart", "optional", name="first"))
            cluster.wait_phase("optional", "first", "Ready")
            cluster.add_peering(status={"boss": {"priority": 20, "lifetime": 60, "lastseen": _now()}})
            wait_for(lambda: _paused(op), what="the operator paused")
            assert op.runner is not None
            runs = op.runner.counters.runs
            cluster.apply_stack(stack_doc("quickstart", "optional", name="second"))
            cluster.kube.delete(SERVICE, "optional", "first-gateway")
            time.sleep(2.0)  # two drift intervals and many debounce periods
            assert cluster.children("optional", "second") == {} and not _finalized(cluster, "optional",
                                                                                   "second")
            assert cluster.kube.get(SERVICE, "optional", "first-gateway") is None
            assert op.runner.counters.runs == runs


ENTRY_POINTS = {"module": ["-m", "aistack.operator"], "cli": ["-m", "aistack.cli", "operator"]}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("named", [False, True], ids=["no-flag", "peering-flag"])
def test_the_command_runs_without_the_peering_crds_unless_a_peering_is_named(entry, named, stack_doc,
                                                                             tmp_path: Path) -> None:
    """Both entry points, as a user runs them on a cluster without kopf's CRDs: without a flag
    the stack gets Ready and stderr says how to install the peering; with `--peering aistack`
    stderr says the operator is paused and what to install, and nothing is created."""
    with EmulatorThread(peering_crds=False) as thread:
        cluster = Cluster(thread)
        cluster.add_namespace("cli")
        kubeconfig = tmp_path / "config"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "e",
            "clusters": [{"name": "e", "cluster": {"server": thread.url}}],
            "users": [{"name": "e", "user": {"token": "t"}}],
            "contexts": [{"name": "e", "context": {"cluster": "e", "user": "e"}}]}))
        flags = ["--peering", "aistack"] if named else []
        process = subprocess.Popen([sys.executable, *ENTRY_POINTS[entry], "--kubeconfig", str(kubeconfig),
                                    "--liveness=", *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in process.stderr or []],
                         daemon=True).start()
        try:
            told = _line_with("aistack.operator.peering: peering:", lines, timeout=60)
            cluster.apply_stack(stack_doc("quickstart", "cli", name="cli"))
            if named:
                time.sleep(2.0)
                assert cluster.children("cli", "cli") == {} and not _finalized(cluster, "cli", "cli")
            else:
                cluster.wait_phase("cli", "cli", "Ready", timeout=30)
        finally:
            process.terminate()
            process.wait(30)
    assert "WARNING" in told and INSTALL in told
    assert ("paused, no ClusterKopfPeering CRD" in told) == named
    assert ("working without peering" in told) == (not named)


def _line_with(text: str, lines: queue.Queue[str], *, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            break
        if text in line:
            return line
        seen.append(line)
    raise TimeoutError(f"no line with {text!r} within {timeout}s; stderr was:\n{''.join(seen)[-3000:]}")
