"""Another writer (a webhook, a controller) adds list items to a child: the operator keeps them
and does not patch the child again. The emulator merges patches as JSON merge patches (lists
whole), which is what the operator sends; the API server's strategic merge is not emulated."""

from __future__ import annotations

import pytest

from aistack.operator.kube import CHILD_KINDS
from aistack.testing.cluster import wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")
DEPLOYMENT = CHILD_KINDS["Deployment"]


def test_items_another_writer_adds_stay_and_cause_no_patch(cluster, operator, namespace, stack_doc) -> None:
    cluster.apply_stack(stack_doc("rag", namespace))
    cluster.wait_phase(namespace, "docs-assistant", "Ready")
    name = "docs-assistant-gateway"
    live = cluster.kube.get(DEPLOYMENT, namespace, name)
    pod = live["spec"]["template"]["spec"]
    containers = pod["containers"]
    containers[0]["env"] = [*containers[0].get("env", []), {"name": "OTEL_ENDPOINT", "value": "http://otel:4317"}]
    volumes = [*pod.get("volumes", []), {"name": "vault-secrets", "emptyDir": {}}]
    cluster.kube.patch(DEPLOYMENT, namespace, name, {"spec": {"template": {"spec": {
        "containers": containers, "volumes": volumes, "imagePullSecrets": [{"name": "regcred"}]}}}})
    path = DEPLOYMENT.path(namespace, name)
    writes = len([1 for method, p in cluster.emulator.log if p == path and method == "PATCH"])
    runs = operator.runner.counters.runs
    wait_for(lambda: operator.runner.counters.runs >= runs + 3, what="three reconciles (drift passes)")
    after = cluster.kube.get(DEPLOYMENT, namespace, name)["spec"]["template"]["spec"]
    assert {"name": "OTEL_ENDPOINT", "value": "http://otel:4317"} in after["containers"][0]["env"]
    assert "vault-secrets" in [v["name"] for v in after["volumes"]]
    assert after["imagePullSecrets"] == [{"name": "regcred"}]
    assert len([1 for method, p in cluster.emulator.log if p == path and method == "PATCH"]) == writes
