"""The operator's Qdrant clients outlive a reconcile and are closed when it stops."""

from __future__ import annotations

import pytest

from aistack.testing.cluster import OperatorThread, QdrantPool, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")


def test_one_client_per_qdrant_serves_every_reconcile_and_is_closed_on_stop(cluster, namespace,
                                                                            stack_doc) -> None:
    pool = QdrantPool()
    url = f"http://docs-assistant-vector-store.{namespace}.svc.cluster.local:6333"
    operator = OperatorThread(cluster, pool, drift_interval=0.2).start()
    try:
        cluster.apply_stack(stack_doc("rag", namespace))
        cluster.wait_phase(namespace, "docs-assistant", "Ready")
        assert operator.runner is not None
        runs = operator.runner.counters.runs
        wait_for(lambda: operator.runner.counters.runs >= runs + 3, what="three more reconciles (drift)")
        assert pool.connects == {url: 1}  # was one client per reconcile, never closed
        assert pool.closes == {}
    finally:
        operator.stop()
    assert pool.closes == {url: 1}
