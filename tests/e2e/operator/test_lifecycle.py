"""The operator end to end against the emulated API server: create, update, layer removal,
drift repair, invalid specs, deletion policies and a no-op resync (a restart: test_restart.py)."""

from __future__ import annotations

import time

import pytest
from qdrant_client import models

from aistack.operator.kube import AISTACK, CHILD_KINDS
from aistack.testing.cluster import wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")

LAYERS = ["Ready", "ModelReady", "RetrievalReady", "GuardrailsReady", "TrackingReady", "GatewayReady"]


def test_create_makes_every_child_and_becomes_ready(cluster, operator, qdrant, namespace, stack_doc) -> None:
    cluster.emulator.kubelet_ready = False
    try:
        cluster.apply_stack(stack_doc("production", namespace))
        progressing = cluster.wait_phase(namespace, "support-copilot", "Progressing")
        assert cluster.condition(namespace, "support-copilot", "ModelReady")["status"] == "False"
        assert progressing["status"]["observedGeneration"] == 1
    finally:
        cluster.emulator.kubelet_ready = True
        cluster.thread.call(cluster.emulator.report_all)
    stack = cluster.wait_phase(namespace, "support-copilot", "Ready")
    children = cluster.children(namespace, "support-copilot")
    assert set(children) == cluster.rendered_keys(namespace, "support-copilot")
    # the guardrails sidecar reads the gateway ConfigMap: no ConfigMap of its own; + the manifest
    # ConfigMap and the ingestion and evaluation Jobs, and the model's headless Service (routing); no
    # model-cache claim: the model's 2 replicas on block storage each get a volume of their own
    # (pod-owned, not the stack's)
    assert len(children) == 14
    status = stack["status"]
    assert [c["type"] for c in status["conditions"]] == LAYERS
    assert all(c["status"] == "True" and c["observedGeneration"] == 1 for c in status["conditions"])
    assert status["endpoint"] == f"http://support-copilot-gateway.{namespace}.svc.cluster.local:8080/v1"
    assert len(status["configHash"]) == 16
    uid = stack["metadata"]["uid"]
    for (kind, name), obj in children.items():
        if name.endswith("-mlflow-data"):
            continue
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid, (kind, name)
    client = qdrant(f"http://support-copilot-vector-store.{namespace}.svc.cluster.local:6333", None)
    params = client.get_collection("support-kb").config.params.vectors
    assert (params.size, params.distance) == (384, models.Distance.COSINE)
    assert stack["metadata"]["finalizers"] == ["aistack.dev/finalizer"]


def test_spec_update_patches_and_rolls_the_deployment(cluster, operator, namespace, stack_doc) -> None:
    cluster.apply_stack(stack_doc("production", namespace))
    cluster.wait_phase(namespace, "support-copilot", "Ready")
    model_key = ("deployments", namespace, "support-copilot-model")
    rollouts = cluster.emulator.rollouts[model_key]
    cluster.kube.patch(AISTACK, namespace, "support-copilot", {"spec": {"model": {"vllm": {
        "replicas": 3, "extraArgs": ["--enable-prefix-caching", "--max-num-seqs=64"]}}}})

    def updated():
        dep = cluster.emulator.find("deployments", namespace, "support-copilot-model")
        return dep if dep["spec"]["replicas"] == 3 else None

    dep = wait_for(updated, what="model Deployment patched")
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "--max-num-seqs=64"
    wait_for(lambda: cluster.emulator.rollouts[model_key] == rollouts + 1,
             what="one rollout of the model pods")
    stack = wait_for(lambda: (
        s := cluster.stack(namespace, "support-copilot"))["status"]["observedGeneration"] == 2
                     and s["status"]["phase"] == "Ready" and s, what="status of generation 2")
    assert stack["metadata"]["generation"] == 2


def test_removing_a_layer_deletes_its_children(cluster, operator, namespace, stack_doc) -> None:
    cluster.apply_stack(stack_doc("rag", namespace))
    cluster.wait_phase(namespace, "docs-assistant", "Ready")
    assert ("StatefulSet", "docs-assistant-vector-store") in cluster.children(namespace, "docs-assistant")
    cluster.kube.patch(AISTACK, namespace, "docs-assistant", {"spec": {
        "retrieval": None, "guardrails": None,
        "orchestration": {"promptTemplate": "Question: {question}"}}})

    def pruned():
        keys = set(cluster.children(namespace, "docs-assistant"))
        return keys if ("StatefulSet", "docs-assistant-vector-store") not in keys else None

    keys = wait_for(pruned, what="retrieval children deleted")
    assert ("Service", "docs-assistant-vector-store") not in keys
    assert ("ConfigMap", "docs-assistant-guardrails-config") not in keys
    assert keys == cluster.rendered_keys(namespace, "docs-assistant")
    # The phase was Ready before the change too: wait for the status of the new generation,
    # which the reconcile writes just after it has pruned the children.
    wait_for(lambda: (
        cluster.stack(namespace, "docs-assistant").get("status") or {}).get("observedGeneration") == 2,
             what="the status of generation 2")
    cluster.wait_phase(namespace, "docs-assistant", "Ready")
    assert cluster.condition(namespace, "docs-assistant", "RetrievalReady") is None
    gateway = cluster.emulator.find("deployments", namespace, "docs-assistant-gateway")
    assert [c["name"] for c in gateway["spec"]["template"]["spec"]["containers"]] == ["gateway"]


def test_deleted_or_edited_child_is_restored(cluster, operator, namespace, stack_doc) -> None:
    cluster.apply_stack(stack_doc("quickstart", namespace))
    cluster.wait_phase(namespace, "quickstart", "Ready")
    original = cluster.emulator.find("deployments", namespace, "quickstart-gateway")
    cluster.kube.delete(CHILD_KINDS["Service"], namespace, "quickstart-gateway")
    cluster.kube.patch(CHILD_KINDS["Deployment"], namespace, "quickstart-gateway", {"spec": {
        "replicas": 5, "template": {"spec": {"containers": [{"name": "gateway", "image": "evil:latest"}]}}}})
    wait_for(lambda: cluster.emulator.find("services", namespace, "quickstart-gateway"),
             what="Service restored")

    def reverted():
        dep = cluster.emulator.find("deployments", namespace, "quickstart-gateway")
        return dep if dep[
            "spec"]["replicas"] == 1 and dep["spec"]["template"] == original["spec"]["template"] else None

    wait_for(reverted, what="hand edit reverted")


def test_invalid_spec_reports_invalid_spec_and_applies_nothing(cluster, operator, namespace,
                                                               stack_doc) -> None:
    doc = stack_doc("quickstart", namespace)
    doc["spec"]["model"]["openai"].pop("apiKeySecretRef")
    doc["spec"]["gateway"] = {"replicaz": 2}
    cluster.apply_stack(doc)
    stack = cluster.wait_phase(namespace, "quickstart", "Failed")
    ready = stack["status"]["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "InvalidSpec")
    assert "spec.model.openai.apiKeySecretRef" in ready["message"]
    assert "spec.gateway.replicaz" in ready["message"]
    events = wait_for(lambda: cluster.events(namespace, "InvalidSpec"), what="InvalidSpec event")
    assert events[0]["type"] == "Warning" and "apiKeySecretRef" in events[0]["message"]
    time.sleep(0.3)
    assert cluster.children(namespace, "quickstart") == {}
    # Fixing the spec converges.
    cluster.kube.patch(AISTACK, namespace, "quickstart", {"spec": {
        "gateway": {"replicaz": None},
        "model": {"openai": {"apiKeySecretRef": {"name": "openai", "key": "k"}}}}})
    cluster.wait_phase(namespace, "quickstart", "Ready")


def test_collection_with_other_vector_size_is_left_alone(cluster, operator, qdrant, namespace,
                                                         stack_doc) -> None:
    client = qdrant(f"http://docs-assistant-vector-store.{namespace}.svc.cluster.local:6333", None)
    client.create_collection("docs",
                             vectors_config=models.VectorParams(size=768, distance=models.Distance.DOT))
    cluster.apply_stack(stack_doc("rag", namespace))

    def mismatch():
        c = cluster.condition(namespace, "docs-assistant", "RetrievalReady")
        return c if c and c["reason"] == "CollectionMismatch" else None

    condition = wait_for(mismatch, what="CollectionMismatch")
    assert condition["status"] == "False"
    assert "size 768" in condition["message"] and "size 384" in condition["message"]
    assert cluster.stack(namespace, "docs-assistant")["status"]["phase"] == "Degraded"
    assert wait_for(lambda: cluster.events(namespace, "CollectionMismatch"), what="mismatch event")
    params = client.get_collection("docs").config.params.vectors
    assert (params.size, params.distance) == (768, models.Distance.DOT)


def _delete_and_wait(cluster, namespace: str, name: str) -> None:
    cluster.kube.delete(AISTACK, namespace, name)
    wait_for(lambda: cluster.stack(namespace, name) is None, what=f"{name} deleted")
    wait_for(lambda: not [k for k in cluster.children(namespace, name) if not k[1].endswith("-mlflow-data")],
             what="children garbage-collected")


def test_delete_with_retain_keeps_the_collection(cluster, operator, qdrant, namespace, stack_doc) -> None:
    cluster.apply_stack(stack_doc("rag", namespace))
    cluster.wait_phase(namespace, "docs-assistant", "Ready")
    _delete_and_wait(cluster, namespace, "docs-assistant")
    client = qdrant(f"http://docs-assistant-vector-store.{namespace}.svc.cluster.local:6333", None)
    assert client.collection_exists("docs")
    assert cluster.emulator.find("persistentvolumeclaims", namespace, "docs-assistant-mlflow-data")


def test_delete_with_delete_policy_drops_the_collection(cluster, operator, qdrant, namespace,
                                                        stack_doc) -> None:
    doc = stack_doc("rag", namespace)
    doc["spec"]["retrieval"]["collection"]["deletionPolicy"] = "Delete"
    cluster.apply_stack(doc)
    cluster.wait_phase(namespace, "docs-assistant", "Ready")
    client = qdrant(f"http://docs-assistant-vector-store.{namespace}.svc.cluster.local:6333", None)
    assert client.collection_exists("docs")
    _delete_and_wait(cluster, namespace, "docs-assistant")
    assert not client.collection_exists("docs")


def test_noop_resync_writes_nothing(cluster, operator, namespace, stack_doc) -> None:
    cluster.apply_stack(stack_doc("production", namespace))
    cluster.wait_phase(namespace, "support-copilot", "Ready")
    time.sleep(1.0)  # let the last child events settle
    assert operator.runner is not None
    runs = operator.runner.counters.runs
    since = len(cluster.emulator.log)
    time.sleep(3 * operator.options.drift_interval + 0.5)
    assert operator.runner.counters.runs > runs, "the drift timer did not reconcile"
    assert cluster.emulator.writes(since) == []
