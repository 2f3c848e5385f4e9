"""The canary's evaluation verdict survives a restarted operator and its Job, in a module of its own
(two operators one after the other, none beside them): what `decide()` remembers is in the status."""

from __future__ import annotations

import time
from typing import Any

from aistack.api.canary_report import CanaryReport, VersionStats, canary_key
from aistack.api.commands import EvalExit
from aistack.operator.kube import CHILD_KINDS, MERGE_PATCH
from aistack.testing.cluster import Cluster, OperatorThread, QdrantPool, wait_for

NAME = "kept"


def stack(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack",
            "metadata": {"name": NAME, "namespace": namespace},
            "spec": {"model": {"provider": "vllm", "name": "Qwen/Qwen2.5-0.5B-Instruct",
                               "canary": {"name": "Qwen/Qwen2.5-1.5B-Instruct", "weight": 20,
                                          "analysis": {"windowSeconds": 60, "minRequests": 10,
                                                       "steps": [50], "stepIntervalSeconds": 1}}},
                     "observability": {"mlflow": {"external": {"trackingUri": "http://mlflow.example.com"}}},
                     "evaluation": {"dataset": {"configMapKeyRef": {"name": "qa", "key": "q.jsonl"}},
                                    "thresholds": {"answer_token_f1": {"min": 0.5}}}}}


def canary_status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    found = cluster.stack(namespace, NAME) or {}
    return ((found.get("status") or {}).get("model") or {}).get("canary") or {}


def canary_jobs(cluster: Cluster, namespace: str) -> list[str]:
    return sorted(child for (kind, child), obj in cluster.children(namespace, NAME).items()
                  if kind == "Job" and obj["metadata"]["labels"]["app.kubernetes.io/component"]
                  == "canary-evaluation")


def report(cluster: Cluster, namespace: str) -> None:
    stable, canary = VersionStats(), VersionStats()
    for _ in range(50):
        stable.observe(0.2, ok=True)
        canary.observe(0.2, ok=True)
    body = CanaryReport(at=time.time(), window=60, versions={"stable": stable, "canary": canary}).encode()
    cluster.kube.request("PATCH", CHILD_KINDS["Lease"].path(namespace, f"{NAME}-model-load"),
                         body={"metadata": {"annotations": {canary_key("gw-1"): body}}},
                         content_type=MERGE_PATCH)


def test_a_passed_evaluation_is_remembered_by_a_new_operator_after_its_job_is_gone(
        cluster: Cluster, qdrant: QdrantPool, namespace: str) -> None:
    with OperatorThread(cluster, qdrant):
        cluster.apply_stack(stack(namespace))
        [job] = wait_for(lambda: canary_jobs(cluster, namespace), what="the canary's evaluation Job")
        cluster.thread.call(cluster.emulator.finish_job, namespace, job, EvalExit.PASSED)
        wait_for(lambda: (canary_status(cluster, namespace).get("evaluation") or {}).get("verdict")
                 == "Passed", what="evaluation Passed")
    assert canary_status(cluster, namespace)["weight"] == 20  # no report yet: no step
    cluster.kube.delete(CHILD_KINDS["Job"], namespace, job)  # e.g. by hand, while no operator runs
    with OperatorThread(cluster, qdrant):
        def stepped() -> bool:
            report(cluster, namespace)
            return canary_status(cluster, namespace).get("verdict") == "Promoted"

        wait_for(stepped, timeout=15, what="the next step, on the remembered verdict")
        time.sleep(1.5)  # more reconciles: the Job stays gone, the verdict stays
        assert canary_jobs(cluster, namespace) == []
    status = canary_status(cluster, namespace)
    assert status["evaluation"] == {"job": job, "verdict": "Passed"} and status["weight"] == 50
