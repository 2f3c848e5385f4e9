"""A canary on the emulator with the real operator: its own Deployment beside the stable model, the
weight in force in status and in the gateway's config, rolled back to 0 when the canary fails its
analysis (status, a Warning Event, its pods kept, no gateway restart), and stepped up to Promoted
when it passes. The failing case runs a real gateway on the operator's rendered config, its two
versions swapped for two loopback test servers (the canary's failing), whose own reports on the
load Lease make the operator act; the passing case writes the reports as a gateway pod does.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import yaml

from aistack.api.canary_report import CanaryReport, VersionStats, canary_key
from aistack.operator.kube import CHILD_KINDS, MERGE_PATCH
from aistack.runtime.core.kube_api import KUBE_API_ENV
from aistack.testing.cluster import Cluster, wait_for
from aistack.testing.gateway import run_gateway
from aistack.testing.openai_server import run_openai_server

LEASE = CHILD_KINDS["Lease"]


def canary_stack(namespace: str, name: str, analysis: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"provider": "vllm", "name": "Qwen/Qwen2.5-0.5B-Instruct",
                               "canary": {"name": "Qwen/Qwen2.5-1.5B-Instruct", "weight": 20,
                                          "analysis": analysis}}}}


def canary_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    stack = cluster.stack(namespace, name) or {}
    return ((stack.get("status") or {}).get("model") or {}).get("canary") or {}


def gateway_config(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    config_map = cluster.emulator.find("configmaps", namespace, f"{name}-gateway-config")
    assert config_map is not None
    return yaml.safe_load(next(iter(config_map["data"].values())))


def printer_columns(stack: dict[str, Any]) -> tuple[Any, Any]:
    """What `kubectl get ais` shows in the Canary and Verdict columns (their jsonPaths)."""
    canary = stack["status"]["model"]["canary"]
    return canary["weight"], canary["verdict"]


def test_a_failing_canary_is_rolled_back_to_zero_with_status_and_event_its_pods_kept(
        cluster: Cluster, operator: Any, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    analysis = {"windowSeconds": 30, "minRequests": 10, "maxErrorRateIncrease": 0.05, "steps": [50, 100],
                "stepIntervalSeconds": 3600}
    cluster.apply_stack(canary_stack(namespace, "shop", analysis))
    cluster.wait_phase(namespace, "shop", "Ready")
    assert cluster.emulator.find("deployments", namespace, "shop-model-canary") is not None
    # 0 until the canary's own pods are available, then the spec's weight
    wait_for(lambda: canary_status(cluster, namespace, "shop").get("weight") == 20, what="canary started")
    wait_for(lambda: gateway_config(cluster, namespace, "shop")["model"]["canary"]["weight"] == 20,
             what="the gateways' config at 20")
    config = gateway_config(cluster, namespace, "shop")
    template = cluster.emulator.find("deployments", namespace, "shop-gateway")["spec"]["template"]

    with run_openai_server(models=[config["model"]["primary"]["model"]]) as stable, \
            run_openai_server(models=[config["model"]["canary"]["upstream"]["model"]]) as canary:
        config["model"]["primary"] = {**config["model"]["primary"], "baseUrl": stable.base_url,
                                      "replicas": None}
        config["model"]["canary"]["upstream"] = {**config["model"]["canary"]["upstream"],
                                                 "baseUrl": canary.base_url, "replicas": None}
        config["model"]["canary"]["seed"] = 5
        canary.configure(fail_next=["500"] * 1000)  # the new version answers every request with a 500
        monkeypatch.setenv(KUBE_API_ENV, cluster.thread.url)
        with run_gateway(config) as gateway, httpx.Client(base_url=gateway.url, timeout=20) as client:
            statuses = [client.post("/v1/chat/completions", json={
                "model": config["model"]["publicName"],
                "messages": [{"role": "user", "content": f"q{i}"}]}).status_code for i in range(80)]
            # the canary's 500s are 502s, then 503s once its circuit breaker opens; the rest answer
            assert statuses.count(200) >= 50 and set(statuses) <= {200, 502, 503}
            # the gateway writes its window on the Lease in the background (every 5 s here)
            rolled = wait_for(lambda: (s := canary_status(cluster, namespace, "shop"))
                              and s["verdict"] == "RolledBack" and s, timeout=15, what="rolled back")
            assert gateway.app.state["holder"].current.canary.reporter.writes >= 1
    assert rolled["weight"] == 0 and "more than 5.0% over stable" in rolled["reason"]
    assert printer_columns(cluster.stack(namespace, "shop")) == (0, "RolledBack")
    events = wait_for(lambda: cluster.events(namespace, "CanaryRolledBack"), what="CanaryRolledBack event")
    assert events[0]["type"] == "Warning" and "20 -> 0" in events[0]["message"]
    wait_for(lambda: gateway_config(cluster, namespace, "shop")["model"]["canary"]["weight"] == 0,
             what="the gateways' config at weight 0")
    kept = cluster.emulator.find("deployments", namespace, "shop-model-canary")
    assert kept is not None and kept["spec"]["replicas"] == 1  # kept for inspection
    assert cluster.emulator.find("deployments", namespace, "shop-gateway")["spec"]["template"] == template
    time.sleep(1.0)  # drift passes: it stays rolled back
    assert canary_status(cluster, namespace, "shop")["weight"] == 0


def report(cluster: Cluster, namespace: str, name: str, *, canary_errors: int) -> None:
    """One gateway pod's window, as it writes it: 90 stable and 30 canary calls."""
    stable, canary = VersionStats(), VersionStats()
    for _ in range(90):
        stable.observe(0.2, ok=True)
    for i in range(30):
        canary.observe(0.2, ok=i >= canary_errors)
    body = CanaryReport(at=time.time(), window=60, versions={"stable": stable, "canary": canary}).encode()
    cluster.kube.request("PATCH", LEASE.path(namespace, f"{name}-model-load"),
                         body={"metadata": {"annotations": {canary_key("gw-1"): body}}},
                         content_type=MERGE_PATCH)


def test_a_passing_canary_follows_its_steps_to_promoted(cluster: Cluster, operator: Any,
                                                        namespace: str) -> None:
    analysis = {"windowSeconds": 60, "minRequests": 10, "steps": [50, 100], "stepIntervalSeconds": 1}
    cluster.apply_stack(canary_stack(namespace, "steady", analysis))
    cluster.wait_phase(namespace, "steady", "Ready")
    started = wait_for(lambda: (s := canary_status(cluster, namespace, "steady")).get("since") and s,
                       what="canary started")
    assert (started["weight"], started["verdict"]) == (20, "Progressing")
    seen = []

    def weight() -> int | None:
        report(cluster, namespace, "steady", canary_errors=0)  # the gateways keep reporting
        status = canary_status(cluster, namespace, "steady")
        if not seen or seen[-1] != status["weight"]:
            seen.append(status["weight"])
        return status["verdict"] == "Promoted" or None

    wait_for(weight, timeout=20, what="promoted")
    assert seen == [20, 50, 100]
    assert printer_columns(cluster.stack(namespace, "steady")) == (100, "Promoted")
    assert gateway_config(cluster, namespace, "steady")["model"]["canary"]["weight"] == 100
    # kopf posts Events from a queue of its own, after the status patch that the wait above saw
    promoted = wait_for(lambda: cluster.events(namespace, "CanaryPromoted"), what="CanaryPromoted event")
    assert len(promoted) == 1
    assert len(cluster.events(namespace, "CanaryStepped")) == 1


def test_a_canary_without_analysis_keeps_the_specs_weight(cluster: Cluster, operator: Any,
                                                         namespace: str) -> None:
    doc = canary_stack(namespace, "manual", {})
    del doc["spec"]["model"]["canary"]["analysis"]
    cluster.apply_stack(doc)
    cluster.wait_phase(namespace, "manual", "Ready")
    wait_for(lambda: canary_status(cluster, namespace, "manual").get("weight") == 20, what="canary started")
    assert printer_columns(cluster.stack(namespace, "manual")) == (20, "Manual")
    assert cluster.emulator.find("leases", namespace, "manual-model-load") is None


def test_a_removed_canary_leaves_no_deployment_status_or_split(cluster: Cluster, operator: Any,
                                                               namespace: str) -> None:
    cluster.apply_stack(canary_stack(namespace, "done", {"minRequests": 5}))
    wait_for(lambda: canary_status(cluster, namespace, "done").get("weight") == 20, what="canary started")
    cluster.kube.request("PATCH", f"/apis/aistack.dev/v1alpha1/namespaces/{namespace}/aistacks/done",
                         body={"spec": {"model": {"canary": None}}}, content_type=MERGE_PATCH)
    wait_for(lambda: cluster.emulator.find("deployments", namespace, "done-model-canary") is None,
             what="the canary's Deployment pruned")
    for plural, name in (("services", "done-model-canary"), ("services", "done-model-canary-replicas"),
                         ("leases", "done-model-load")):
        wait_for(lambda plural=plural, name=name: cluster.emulator.find(plural, namespace, name) is None,
                 what=f"{plural} {name} pruned")
    # one read: the merge patch that clears it removes the key, so a second read could miss it
    wait_for(lambda: ((cluster.stack(namespace, "done") or {}).get("status") or {}).get("model") is None,
             what="status.model cleared")
    assert "canary" not in gateway_config(cluster, namespace, "done")["model"]
