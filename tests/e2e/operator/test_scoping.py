"""`--namespace` scoping: an operator limited to some namespaces leaves the others alone.

A module of its own: the shared cluster-wide operator of other modules must not be running.
"""

from __future__ import annotations

import time

from aistack.testing.cluster import OperatorThread


def test_namespace_scoped_operator_ignores_other_namespaces(cluster, qdrant, stack_doc) -> None:
    for ns in ("scoped-in", "scoped-out"):
        cluster.add_namespace(ns)
    with OperatorThread(cluster, qdrant, namespaces=("scoped-in",)):
        cluster.apply_stack(stack_doc("quickstart", "scoped-out"))
        cluster.apply_stack(stack_doc("quickstart", "scoped-in"))
        cluster.wait_phase("scoped-in", "quickstart", "Ready")
        time.sleep(0.3)
        assert cluster.children("scoped-out", "quickstart") == {}
        assert "status" not in cluster.stack("scoped-out", "quickstart")
