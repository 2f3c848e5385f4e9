"""The canary judged on the evaluation metrics, on the emulator with the real operator: once the
canary has started, its evaluation Job (`aistack eval --compare-stable`) is created; while it runs no
step is taken; a failed one rolls the canary back (status, a Warning Event naming the Job, its pods
kept); a passed one leaves the canary to its steps. The Job's pod is not run (the emulator has no
pods): its exit code is handed to the emulator's Job controller, which applies the Job's
podFailurePolicy as Kubernetes does; the command line itself is tested against a real gateway in
tests/integration/retrieval/test_eval_canary.py."""

from __future__ import annotations

import time
from typing import Any

import yaml

from aistack.api.canary_report import CanaryReport, VersionStats, canary_key
from aistack.api.commands import EvalExit
from aistack.operator.kube import CHILD_KINDS, MERGE_PATCH
from aistack.testing.cluster import Cluster, wait_for

LEASE = CHILD_KINDS["Lease"]


def stack(namespace: str, name: str, analysis: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"provider": "vllm", "name": "Qwen/Qwen2.5-0.5B-Instruct",
                               "canary": {"name": "Qwen/Qwen2.5-1.5B-Instruct", "weight": 20,
                                          "analysis": analysis}},
                     "observability": {"mlflow": {"external": {"trackingUri": "http://mlflow.example.com"}}},
                     "evaluation": {"dataset": {"configMapKeyRef": {"name": "qa", "key": "q.jsonl"}},
                                    "thresholds": {"answer_token_f1": {"min": 0.5}}}}}


def canary_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    found = cluster.stack(namespace, name) or {}
    return ((found.get("status") or {}).get("model") or {}).get("canary") or {}


def canary_jobs(cluster: Cluster, namespace: str, name: str) -> list[str]:
    return sorted(child for (kind, child), obj in cluster.children(namespace, name).items()
                  if kind == "Job" and obj["metadata"]["labels"]["app.kubernetes.io/component"]
                  == "canary-evaluation")


def gateway_weight(cluster: Cluster, namespace: str, name: str) -> int:
    config_map = cluster.emulator.find("configmaps", namespace, f"{name}-gateway-config")
    assert config_map is not None
    return yaml.safe_load(next(iter(config_map["data"].values())))["model"]["canary"]["weight"]


def report(cluster: Cluster, namespace: str, name: str) -> None:
    """One gateway pod's window, as it writes it: 90 stable and 30 canary calls, all fine."""
    stable, canary = VersionStats(), VersionStats()
    for _ in range(90):
        stable.observe(0.2, ok=True)
    for _ in range(30):
        canary.observe(0.2, ok=True)
    body = CanaryReport(at=time.time(), window=60, versions={"stable": stable, "canary": canary}).encode()
    cluster.kube.request("PATCH", LEASE.path(namespace, f"{name}-model-load"),
                         body={"metadata": {"annotations": {canary_key("gw-1"): body}}},
                         content_type=MERGE_PATCH)


def started_with_its_evaluation(cluster: Cluster, namespace: str, name: str) -> str:
    cluster.apply_stack(stack(namespace, name, {"windowSeconds": 60, "minRequests": 10, "steps": [50, 100],
                                                "stepIntervalSeconds": 1}))
    cluster.wait_phase(namespace, name, "Ready")
    wait_for(lambda: canary_status(cluster, namespace, name).get("since"), what="canary started")
    [job] = wait_for(lambda: canary_jobs(cluster, namespace, name), what="the canary's evaluation Job")
    status = wait_for(lambda: (s := canary_status(cluster, namespace, name)).get("evaluation") and s,
                      what="status.model.canary.evaluation")
    assert status["evaluation"] == {"job": job, "verdict": "Running"}
    return job


def test_a_canary_whose_evaluation_fails_is_rolled_back_with_status_and_event(
        cluster: Cluster, operator: Any, namespace: str) -> None:
    job = started_with_its_evaluation(cluster, namespace, "shop")
    assert canary_status(cluster, namespace, "shop")["weight"] == 20
    cluster.thread.call(cluster.emulator.finish_job, namespace, job, EvalExit.FAILED)
    rolled = wait_for(lambda: (s := canary_status(cluster, namespace, "shop"))["verdict"] == "RolledBack"
                      and s, what="rolled back")
    assert rolled["weight"] == 0 and rolled["evaluation"] == {"job": job, "verdict": "Failed"}
    assert f"kubectl logs job/{job}" in rolled["reason"]
    events = wait_for(lambda: cluster.events(namespace, "CanaryRolledBack"), what="CanaryRolledBack event")
    assert events[0]["type"] == "Warning" and "20 -> 0" in events[0]["message"]
    assert job in events[0]["message"]
    wait_for(lambda: gateway_weight(cluster, namespace, "shop") == 0, what="the gateways' config at weight 0")
    assert cluster.emulator.find("deployments", namespace, "shop-model-canary") is not None  # kept
    assert canary_jobs(cluster, namespace, "shop") == [job]  # the Job kept too: its log has the table


def test_a_canary_whose_evaluation_passes_follows_its_steps_only_then(
        cluster: Cluster, operator: Any, namespace: str) -> None:
    job = started_with_its_evaluation(cluster, namespace, "steady")
    deadline = time.monotonic() + 3  # three step intervals of passing reports: still held
    while time.monotonic() < deadline:
        report(cluster, namespace, "steady")
        time.sleep(0.3)
    held = canary_status(cluster, namespace, "steady")
    assert (held["weight"], held["verdict"]) == (20, "Progressing")
    assert held["reason"] == f"waiting for the canary's evaluation (job {job})"
    cluster.thread.call(cluster.emulator.finish_job, namespace, job, EvalExit.PASSED)
    seen: list[int] = []

    def promoted() -> bool | None:
        report(cluster, namespace, "steady")
        status = canary_status(cluster, namespace, "steady")
        if not seen or seen[-1] != status["weight"]:
            seen.append(status["weight"])
        return status["verdict"] == "Promoted" or None

    wait_for(promoted, timeout=20, what="promoted")
    assert seen == [20, 50, 100]
    assert canary_status(cluster, namespace, "steady")["evaluation"] == {"job": job, "verdict": "Passed"}
    wait_for(lambda: cluster.events(namespace, "CanaryPromoted"), what="CanaryPromoted event")
