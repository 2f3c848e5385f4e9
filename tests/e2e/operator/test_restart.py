"""Operator restart after an API outage, in a module of its own: the module-scoped operator of
test_lifecycle.py would otherwise keep reconciling the same stack beside the two under test
(and finish it as soon as the outage ends)."""

from __future__ import annotations

from aistack.testing.cluster import OperatorThread, wait_for


def test_restart_mid_reconcile_converges_without_duplicates(cluster, qdrant, namespace, stack_doc) -> None:
    """An API outage stops the first operator half way; a fresh operator finishes the job."""
    cluster.emulator.fail_writes_after = 4
    try:
        with OperatorThread(cluster, qdrant) as first:
            cluster.apply_stack(stack_doc("production", namespace, name="restarted"))
            wait_for(lambda: first.runner and first.runner.counters.errors > 0, what="a failed reconcile")
    finally:
        cluster.emulator.fail_writes_after = None
    partial = {k: v["metadata"]["uid"] for k, v in cluster.children(namespace, "restarted").items()}
    assert len(partial) == 4
    assert (cluster.stack(namespace, "restarted").get("status") or {}).get("phase") != "Ready"
    with OperatorThread(cluster, qdrant):
        cluster.wait_phase(namespace, "restarted", "Ready")
    children = cluster.children(namespace, "restarted")
    assert set(children) == cluster.rendered_keys(namespace, "restarted")  # nothing extra, nothing missing
    assert {k: children[k]["metadata"]["uid"] for k in partial} == partial  # adopted, not recreated


def test_start_with_more_stacks_than_workers_converges_them_all(cluster, qdrant, namespace,
                                                                stack_doc) -> None:
    """Stacks that exist before the operator starts, more of them than kopf has workers: each
    gets its turn (kopf holds every handler back until an indexed kind is fully indexed, so a
    kopf index here would let the first workers wait forever for objects with no worker)."""
    names = [f"queued-{i}" for i in range(5)]
    for name in names:
        cluster.apply_stack(stack_doc("quickstart", namespace, name=name))
    with OperatorThread(cluster, qdrant, worker_limit=2):
        for name in names:
            cluster.wait_phase(namespace, name, "Ready")
    for name in names:
        assert set(cluster.children(namespace, name)) == cluster.rendered_keys(namespace, name)
