"""Status: readiness per layer from children, conditions for declared layers only, stable
timestamps, and no patch when nothing changed."""

from __future__ import annotations

from aistack.operator.check import Check
from aistack.operator.render import render
from aistack.operator.status import build_status, layer_checks, status_patch, workload_check


def deployment(*, replicas: int = 1, available: int = 1, generation: int = 1, observed: int = 1) -> dict:
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": {"availableReplicas": available, "observedGeneration": observed}}


def test_workload_check() -> None:
    assert workload_check({}, "Deployment", "x").reason == "Creating"
    live = {("Deployment", "x"): deployment(replicas=2, available=1)}
    assert workload_check(live, "Deployment", "x") == Check(ok=False, reason="Progressing",
                                                            message="Deployment x: 1/2 pods ready")
    live = {("Deployment", "x"): deployment(generation=2, observed=1)}
    assert workload_check(live, "Deployment", "x").reason == "Progressing"
    assert workload_check({("Deployment", "x"): deployment(replicas=0, available=0)}, "Deployment",
                          "x").reason \
        == "ScaledToZero"
    assert workload_check({("Deployment", "x"): deployment()}, "Deployment", "x").ok
    sts = {("StatefulSet", "q"): {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}}}
    assert workload_check(sts, "StatefulSet", "q").ok


def test_only_declared_layers_get_conditions(make_stack) -> None:
    checks = layer_checks(render(make_stack("quickstart")), {}, collection=None, failed={})
    assert list(checks) == ["ModelReady", "GatewayReady"]
    assert checks["ModelReady"].ok and not checks["GatewayReady"].ok
    checks = layer_checks(render(make_stack("rag")), {}, collection=None, failed={})
    assert list(checks) == ["ModelReady", "RetrievalReady", "GuardrailsReady", "TrackingReady",
                            "GatewayReady"]


def test_collection_mismatch_degrades_the_stack(make_stack) -> None:
    rendered = render(make_stack("rag"))
    live = {("StatefulSet", "docs-assistant-vector-store"): {"spec": {"replicas": 1},
                                                             "status": {"readyReplicas": 1}},
            ("Deployment", "docs-assistant-gateway"): deployment(),
            ("Deployment", "docs-assistant-mlflow"): deployment()}
    mismatch = Check(ok=False, reason="CollectionMismatch", message="size differs")
    checks = layer_checks(rendered, live, collection=mismatch, failed={})
    status = build_status(rendered, generation=3, checks=checks, gateway_ready_replicas=1,
                          previous=None, now="T1")
    assert status["phase"] == "Degraded"
    assert status["conditions"][0] == {"type": "Ready", "status": "False", "reason": "LayersNotReady",
                                       "message": "not ready: RetrievalReady", "lastTransitionTime": "T1",
                                       "observedGeneration": 3}


def test_sources_the_cluster_cannot_read_are_named_in_the_retrieval_condition(make_stack) -> None:
    live = {("StatefulSet", "docs-assistant-vector-store"): {"spec": {"replicas": 1},
                                                             "status": {"readyReplicas": 1}}}
    ready = Check(ok=True, reason="CollectionReady", message="collection 'docs': size 384, distance Cosine")
    assert layer_checks(render(make_stack("rag")), live,
                        collection=ready, failed={})["RetrievalReady"] == ready
    local = make_stack("rag", {"spec": {"retrieval": {"sources": [{"uri": "docs"}, {"uri": "notes/"}]}}})
    check = layer_checks(render(local), live, collection=ready, failed={})["RetrievalReady"]
    # the collection is fine; ingestion is not here
    assert (check.ok, check.reason) == (True, "CollectionReady")
    assert check.message == ("collection 'docs': size 384, distance Cosine; "
                             "not ingested here, a path with no volume: docs, notes/")


def test_transition_time_kept_until_status_flips_and_no_patch_when_equal(make_stack) -> None:
    rendered = render(make_stack("quickstart"))
    live = {("Deployment", "quickstart-gateway"): deployment()}
    checks = layer_checks(rendered, live, collection=None, failed={})
    first = build_status(rendered, generation=1, checks=checks, gateway_ready_replicas=1,
                         previous=None, now="T1")
    again = build_status(rendered, generation=1, checks=checks, gateway_ready_replicas=1,
                         previous=first, now="T2")
    assert again == first and status_patch(again, first) is None
    # the endpoint and the scale selector are the render's: the gateway Service and pod labels
    assert first["endpoint"] == "http://quickstart-gateway.default.svc.cluster.local:8080/v1"
    assert first["selector"] == ("app.kubernetes.io/name=aistack,app.kubernetes.io/instance=quickstart,"
                                 "app.kubernetes.io/component=gateway")
    down = layer_checks(rendered, {}, collection=None, failed={})
    flipped = build_status(rendered, generation=1, checks=down, gateway_ready_replicas=0,
                           previous=first, now="T3")
    times = {c["type"]: c["lastTransitionTime"] for c in flipped["conditions"]}
    assert times == {"Ready": "T3", "ModelReady": "T1", "GatewayReady": "T3"}
    assert set(status_patch(flipped, first)) == {"conditions", "phase", "replicas"}


def test_ingestion_status_from_the_job() -> None:
    from aistack.operator.status import ingestion_status

    def job(*conditions: dict) -> dict:
        return {"metadata": {"name": "s-ingest-1"}, "status": {"conditions": list(conditions)}}

    assert ingestion_status(None) is None
    assert ingestion_status(job())["phase"] == "Running"
    assert ingestion_status(job({"type": "Complete", "status": "True"})) == {
        "job": "s-ingest-1", "phase": "Succeeded", "message": "every document ingested"}
    skipped = ingestion_status(job({"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
                                    "message": "Container ingest for pod ns/p failed with exit code 1 "
                                               "matching FailJob rule at index 0"}))
    assert skipped["phase"] == "Failed" and skipped["message"].startswith("some documents could not be read")
    gave_up = ingestion_status(job({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                    "message": "Job has reached the specified backoff limit"}))
    assert gave_up["message"] == ("BackoffLimitExceeded: Job has reached the specified backoff limit "
                                  "(`kubectl logs job/s-ingest-1` names them)")
    assert ingestion_status(job({"type": "Failed", "status": "False"}))["phase"] == "Running"
    # the same keys in every phase: a merge patch leaves nothing of an earlier phase behind
    assert {frozenset(ingestion_status(j)) for j in (job(), job({"type": "Complete", "status": "True"}))} == {
        frozenset({"job", "phase", "message"})}
