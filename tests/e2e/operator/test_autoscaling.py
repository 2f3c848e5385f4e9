"""The built-in autoscaler on the emulator, with the real operator: a model's replicas follow the load
its gateways report on the load Lease (written here as a gateway pod writes it), through the
Deployment's scale subresource; down only after the delay, to zero after the idle window (status
ScaledToZero, not failed), and back up at once for a held request; with `targetWaiting`, on the
engines' own queue as the gateways read it from each replica's /metrics (a step load with noise,
scale events counted). A model without autoscaling is never scaled.

Not covered here: the API server's RBAC enforcement of the gateway's Role (the emulator enforces no
RBAC; `test_rbac.py` checks the operator's own calls, the render test the Role's one rule).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import httpx
import pytest
import yaml

from aistack.api.model_load import LoadReport, report_key
from aistack.operator.kube import CHILD_KINDS, MERGE_PATCH
from aistack.runtime.core.kube_api import KUBE_API_ENV
from aistack.testing.cluster import Cluster, wait_for
from aistack.testing.gateway import run_gateway
from aistack.testing.openai_server import ServerOptions, run_openai_server
from aistack.testing.starting_server import StartingReplica

LEASE = CHILD_KINDS["Lease"]


def vllm_stack(namespace: str, name: str, vllm: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"provider": "vllm", "name": "Qwen/Qwen2.5-0.5B-Instruct", "vllm": vllm}}}


def report(cluster: Cluster, namespace: str, stack: str, *, demand: int, held: int = 0,
           pod: str = "gw-1", waiting: int = 0) -> None:
    """What one gateway pod writes: a merge patch of its own annotation on the load Lease."""
    body = {"metadata": {"annotations": {
        report_key(pod): LoadReport(demand=demand, held=held, at=time.time(), waiting=waiting).encode()}}}
    cluster.kube.request("PATCH", LEASE.path(namespace, f"{stack}-model-load"), body=body,
                         content_type=MERGE_PATCH)


def replicas(cluster: Cluster, namespace: str, name: str) -> int | None:
    deployment = cluster.emulator.find("deployments", namespace, name)
    if deployment is None:
        return None
    return int(deployment["spec"].get("replicas", 1))


def scale_calls(cluster: Cluster, namespace: str, name: str) -> int:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"
    return sum(1 for method, p in cluster.emulator.log if method == "PATCH" and p == path)


def test_replicas_follow_the_reported_load_down_to_zero_and_wake_on_held_demand(
        cluster: Cluster, operator: Any, namespace: str) -> None:
    scaling = {"minReplicas": 0, "maxReplicas": 3, "targetRequests": 2, "scaleDownDelaySeconds": 1,
               "idleSeconds": 2, "holdSeconds": 30}
    cluster.apply_stack(vllm_stack(namespace, "auto", {"autoscaling": scaling}))
    cluster.wait_phase(namespace, "auto", "Ready")
    model = "auto-model"
    lease = wait_for(lambda: cluster.emulator.find("leases", namespace, "auto-model-load"), what="load Lease")
    assert lease["metadata"]["ownerReferences"][0]["name"] == "auto"
    role = cluster.emulator.find("roles", namespace, "auto-gateway-load")
    assert role is not None and role["rules"] == [{
        "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["auto-model-load"],
        "verbs": ["patch"]}]
    assert "replicas" not in cluster.emulator.find("deployments", namespace, model)["spec"]

    report(cluster, namespace, "auto", demand=5)  # ceil(5 / 2) = 3
    wait_for(lambda: replicas(cluster, namespace, model) == 3, what="scaled up to 3")
    wait_for(lambda: "3/3 pods ready" in (cluster.condition(namespace, "auto", "ModelReady") or {}).get(
        "message", ""), what="3 replicas available")
    since = len(cluster.emulator.log)
    report(cluster, namespace, "auto", demand=5, pod="gw-2")  # 10 over two pods: still capped at 3
    time.sleep(0.5)
    assert replicas(cluster, namespace, model) == 3 and scale_calls(cluster, namespace, model) == 1
    # a report that changes no count costs the operator no write (one reconcile, from its caches)
    assert [w for w in cluster.emulator.writes(since) if "/leases/" not in w[1]] == []

    report(cluster, namespace, "auto", demand=1)
    report(cluster, namespace, "auto", demand=0, pod="gw-2")
    lowered = time.monotonic()
    wait_for(lambda: replicas(cluster, namespace, model) == 1, timeout=10, what="scaled down to 1")
    assert time.monotonic() - lowered >= 0.9  # only after scaleDownDelaySeconds

    report(cluster, namespace, "auto", demand=0)
    idle = time.monotonic()
    wait_for(lambda: replicas(cluster, namespace, model) == 0, timeout=10, what="scaled to zero")
    assert time.monotonic() - idle >= 1.9  # only after idleSeconds
    ready = wait_for(lambda: (c := cluster.condition(namespace, "auto", "ModelReady"))
                     and c["reason"] == "ScaledToZero" and c, what="ModelReady ScaledToZero")
    assert ready["status"] == "True" and "holds the next one" in ready["message"]
    assert cluster.stack(namespace, "auto")["status"]["phase"] == "Ready"

    report(cluster, namespace, "auto", demand=1, held=1)  # a request held at zero wakes it at once
    woke = time.monotonic()
    wait_for(lambda: replicas(cluster, namespace, model) == 1, timeout=5, what="woken by held demand")
    assert time.monotonic() - woke < 2
    assert scale_calls(cluster, namespace, model) == 4  # 3, 1, 0, 1: no flapping between
    scaled = wait_for(lambda: len(events := cluster.events(namespace, "Scaled")) >= 4 and events,
                      what="a Scaled event per change")
    assert {e["type"] for e in scaled} == {"Normal"}
    assert any("demand 5 needs 3 replicas" in e["message"] for e in scaled)


def test_a_model_without_autoscaling_is_never_scaled(cluster: Cluster, operator: Any, namespace: str) -> None:
    cluster.apply_stack(vllm_stack(namespace, "pinned", {"replicas": 2}))
    cluster.wait_phase(namespace, "pinned", "Ready")
    assert cluster.emulator.find("leases", namespace, "pinned-model-load") is None
    assert cluster.emulator.find("roles", namespace, "pinned-gateway-load") is None
    time.sleep(1.0)  # a few drift passes (1 s in the harness)
    assert replicas(cluster, namespace, "pinned-model") == 2
    assert scale_calls(cluster, namespace, "pinned-model") == 0


def test_autoscaling_removed_pins_the_count_and_drops_the_lease(cluster: Cluster, operator: Any,
                                                                namespace: str) -> None:
    cluster.apply_stack(vllm_stack(namespace, "flip", {"autoscaling": {"minReplicas": 2, "maxReplicas": 4}}))
    wait_for(lambda: replicas(cluster, namespace, "flip-model") == 2, what="scaled to minReplicas")
    cluster.kube.request("PATCH", f"/apis/aistack.dev/v1alpha1/namespaces/{namespace}/aistacks/flip",
                         body={"spec": {"model": {"vllm": {"autoscaling": None, "replicas": 1}}}},
                         content_type=MERGE_PATCH)
    wait_for(lambda: replicas(cluster, namespace, "flip-model") == 1, what="pinned to replicas")
    for plural, name in (("leases", "flip-model-load"), ("serviceaccounts", "flip-gateway"),
                         ("roles", "flip-gateway-load"), ("rolebindings", "flip-gateway-load")):
        wait_for(lambda plural=plural, name=name: cluster.emulator.find(plural, namespace, name) is None,
                 what=f"{plural} {name} pruned")
    assert scale_calls(cluster, namespace, "flip-model") == 1


def test_a_request_to_a_model_at_zero_wakes_it_through_the_gateways_report(
        cluster: Cluster, operator: Any, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole chain: the operator stops the idle model; a request to the real gateway (its config
    as the operator rendered it, the replica's address swapped for a loopback one) is held; the
    gateway's report on the Lease makes the operator scale to 1; the "kubelet" below starts the
    replica's server; the held request is answered."""
    scaling = {"minReplicas": 0, "maxReplicas": 2, "targetRequests": 4, "idleSeconds": 1,
               "holdSeconds": 20}
    cluster.apply_stack(vllm_stack(namespace, "wake", {"autoscaling": scaling}))
    wait_for(lambda: replicas(cluster, namespace, "wake-model") == 0, timeout=10, what="idle model stopped")
    config_map = cluster.emulator.find("configmaps", namespace, "wake-gateway-config")
    assert config_map is not None
    config = yaml.safe_load(next(iter(config_map["data"].values())))
    assert config["model"]["scaling"] == {"targetRequests": 4, "holdSeconds": 20.0,
                                          "reportLease": "wake-model-load"}
    with StartingReplica(ServerOptions(models=[config["model"]["primary"]["model"]])) as replica:
        config["model"]["primary"]["replicas"] = {"urls": [replica.base_url], "policy": "least-busy"}
        config["model"]["primary"]["baseUrl"] = replica.base_url
        monkeypatch.setenv(KUBE_API_ENV, cluster.thread.url)
        stop = threading.Event()
        scaled_to: list[int] = []

        def kubelet() -> None:  # the replica's server starts when the model is scaled up
            while not stop.is_set():
                count = replicas(cluster, namespace, "wake-model")
                if count:
                    scaled_to.append(count)
                    replica.start()
                    return
                time.sleep(0.05)

        threading.Thread(target=kubelet, daemon=True).start()
        try:
            with run_gateway(config) as gateway:
                started = time.monotonic()
                response = httpx.post(f"{gateway.url}/v1/chat/completions", timeout=30, json={
                    "model": config["model"]["publicName"], "messages": [{"role": "user", "content": "hi"}]})
                woke = time.monotonic() - started
        finally:
            stop.set()
    assert response.status_code == 200, response.text
    assert woke < 5, woke
    # one replica woke for one held request (read when it happened: with idleSeconds 1 the count may
    # already be back at 0 by now, which the next line waits for)
    assert scaled_to == [1]
    wait_for(lambda: replicas(cluster, namespace, "wake-model") == 0, timeout=10, what="idle again, stopped")


def engine_page(*, waiting: int, running: int = 4, kv: float = 0.9) -> str:
    """The part of a vLLM 0.32 /metrics page the gateway reads."""
    labels = '{engine="0",model_name="Qwen/Qwen2.5-0.5B-Instruct"}'
    return (f"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{labels} {running}.0\n"
            f"# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{labels} {waiting}.0\n"
            f"# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{labels} {kv}\n")


def test_a_step_of_the_engines_queue_scales_up_and_down_once_despite_noise(
        cluster: Cluster, operator: Any, namespace: str) -> None:
    """targetWaiting 2, and a demand (8 in flight) that alone needs one replica: the queue's step to
    ~5 (noisy: 4-6) asks for 3 replicas at once and holds them, its step back to 0 returns to 1
    after the delay; two gateway pods reading the same replicas do not double the queue."""
    scaling = {"minReplicas": 1, "maxReplicas": 6, "targetRequests": 100, "targetWaiting": 2,
               "scaleDownDelaySeconds": 1, "idleSeconds": 60}
    cluster.apply_stack(vllm_stack(namespace, "queue", {"autoscaling": scaling}))
    model = "queue-model"
    wait_for(lambda: replicas(cluster, namespace, model) == 1, what="scaled to minReplicas")
    before = scale_calls(cluster, namespace, model)
    rng = random.Random(5)
    counts = []
    for waiting in [0] * 5 + [6] + [rng.randint(4, 6) for _ in range(30)]:
        for pod in ("gw-1", "gw-2"):  # each pod reads every replica: the same queue twice
            report(cluster, namespace, "queue", demand=4, waiting=waiting, pod=pod)
        time.sleep(0.05)
        counts.append(replicas(cluster, namespace, model))
    wait_for(lambda: replicas(cluster, namespace, model) == 3, what="scaled up to 3 on the queue")
    assert max(c or 0 for c in counts) <= 3  # ceil(6 / 2), never the doubled queue's 6
    for pod in ("gw-1", "gw-2"):
        report(cluster, namespace, "queue", demand=4, waiting=0, pod=pod)
    lowered = time.monotonic()
    wait_for(lambda: replicas(cluster, namespace, model) == 1, timeout=10, what="back to 1")
    assert time.monotonic() - lowered >= 0.9  # after scaleDownDelaySeconds
    assert scale_calls(cluster, namespace, model) - before == 2  # up once, down once: no flapping
    events = wait_for(lambda: len(e := cluster.events(namespace, "Scaled")) >= 2 and e, what="Scaled events")
    assert any("waiting in the engines need 3 replicas" in e["message"] for e in events), events


def test_the_gateway_reports_the_engines_queue_read_from_each_replica(
        cluster: Cluster, operator: Any, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain on the engines' own load: the real gateway (the operator's rendered config, its
    replicas two loopback servers serving vLLM's /metrics) reads each replica's queue, reports the
    sum on the Lease, and the operator scales on it; the queue gone, back to minReplicas."""
    scaling = {"minReplicas": 1, "maxReplicas": 4, "targetRequests": 100, "targetWaiting": 2,
               "scaleDownDelaySeconds": 1}
    cluster.apply_stack(vllm_stack(namespace, "engq", {"autoscaling": scaling}))
    wait_for(lambda: replicas(cluster, namespace, "engq-model") == 1, what="scaled to minReplicas")
    config_map = wait_for(lambda: cluster.emulator.find("configmaps", namespace, "engq-gateway-config"),
                          what="gateway config")
    config = yaml.safe_load(next(iter(config_map["data"].values())))
    assert config["model"]["scaling"]["targetWaiting"] == 2
    name = config["model"]["primary"]["model"]
    with run_openai_server(models=[name], metrics_page=engine_page(waiting=3)) as a, \
            run_openai_server(models=[name], metrics_page=engine_page(waiting=4, kv=0.95)) as b:
        config["model"]["primary"]["replicas"] = {"urls": [a.base_url, b.base_url], "policy": "least-busy"}
        monkeypatch.setenv(KUBE_API_ENV, cluster.thread.url)
        with run_gateway(config, engine_metrics_interval_s=0.2):
            wait_for(lambda: replicas(cluster, namespace, "engq-model") == 4, timeout=10,
                     what="scaled on the engines' queue: ceil((3 + 4) / 2)")
            lease = cluster.emulator.find("leases", namespace, "engq-model-load")
            reports = [LoadReport.decode(v) for v in lease["metadata"]["annotations"].values()]
            assert [(r.waiting, r.kv) for r in reports if r] == [(7, 0.95)]
            a.configure(metrics_page=engine_page(waiting=0))
            b.configure(metrics_page=engine_page(waiting=0))
            wait_for(lambda: replicas(cluster, namespace, "engq-model") == 1, timeout=10,
                     what="back to minReplicas once the queue is gone")
