"""Every API call the operator made in a full lifecycle is allowed by deploy/operator's
ClusterRole, the ClusterRole grants nothing the operator never uses, and the operator never
reads a Secret (an external Qdrant's key goes to the collection Job, not to the operator)."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import pytest
import yaml

from aistack.operator.kube import AISTACK, CALLS, CHILD_KINDS, Kind
from aistack.operator.machinery.leader import LeaseOptions
from aistack.operator.machinery.peering import PeeringOptions
from aistack.testing.cluster import Cluster, OperatorThread, wait_for
from aistack.testing.emulator import EmulatorThread

RBAC = Path(__file__).resolve().parents[3] / "deploy" / "operator" / "rbac.yaml"
SECRET = Kind(api_version="v1", kind="Secret", plural="secrets")
VERBS = {"GET": "get", "WATCH": "watch", "POST": "create", "PATCH": "patch", "PUT": "update",
         "DELETE": "delete"}
PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                  r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$")

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")


def cluster_role(kind: str = "ClusterRole") -> list[dict]:
    docs = [d for d in yaml.safe_load_all(RBAC.read_text(encoding="utf-8")) if d]
    return next(d for d in docs if d["kind"] == kind)["rules"]


def allowed(rules: list[dict], group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


def permission(method: str, path: str) -> tuple[str, str, str] | None:
    """(apiGroup, resource[/subresource], verb) of a request; None for discovery paths."""
    match = PATH.match(path)
    if match is None:
        return None
    group = "" if match["core"] else match["group"]
    if match["ns"] is not None and match["plural"] is None:
        return None
    plural, name, sub = match["plural"], match["name"], match["sub"]
    if match["ns"] is None and plural == "namespaces" and name is not None and sub is not None:
        return None
    verb = VERBS[method]
    if method == "GET" and name is None:
        verb = "list"
    return group, f"{plural}/{sub}" if sub else plural, verb


def test_permission_parsing() -> None:
    assert permission("GET", "/api") is None
    assert permission("GET", "/apis/apps/v1") is None
    assert permission("GET", "/api/v1/namespaces") == ("", "namespaces", "list")
    assert permission("WATCH", "/apis/apps/v1/deployments") == ("apps", "deployments", "watch")
    assert permission("PATCH", "/apis/aistack.dev/v1alpha1/namespaces/a/aistacks/x/status") == (
        "aistack.dev", "aistacks/status", "patch")
    assert permission("GET", "/api/v1/namespaces/a/secrets/s") == ("", "secrets", "get")


def test_every_call_of_a_full_lifecycle_is_allowed(cluster, operator, qdrant, namespace, stack_doc) -> None:
    since = len(cluster.emulator.log)
    # An external Qdrant whose key is in a Secret: its collection Job holds the key, not the operator.
    cluster.kube.create(SECRET, namespace, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "qd"},
                                            "data": {"key": base64.b64encode(b"not-a-real-key").decode()}})
    external = stack_doc("rag", namespace, name="external")
    external["spec"]["retrieval"]["vectorStore"] = {"external": {
        "url": "https://qdrant.example.com", "apiKeySecretRef": {"name": "qd", "key": "key"}}}
    cluster.apply_stack(external)
    [job] = wait_for(lambda: [j for j in cluster.emulator.all("jobs")
                              if j["metadata"]["namespace"] == namespace
                              and j["metadata"]["name"].startswith("external-coll-")] or None,
                     what="the collection Job")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert {"name": "AISTACK_SECRET_QD_KEY", "valueFrom": {"secretKeyRef": {"name": "qd", "key": "key"}}} \
        in container["env"]
    cluster.thread.call(cluster.emulator.finish_job, namespace, job["metadata"]["name"], 0)
    cluster.wait_phase(namespace, "external", "Ready")
    # Create, update, layer removal, invalid spec, deletion with collection cleanup.
    doc = stack_doc("production", namespace)
    doc["spec"]["retrieval"]["collection"]["deletionPolicy"] = "Delete"
    # the built-in autoscaler: its load Lease, the gateway's Role on it, and a scale to minReplicas
    del doc["spec"]["model"]["vllm"]["replicas"]
    doc["spec"]["model"]["vllm"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 3}
    cluster.apply_stack(doc)
    cluster.wait_phase(namespace, "support-copilot", "Ready")
    wait_for(lambda: (cluster.emulator.find("deployments", namespace, "support-copilot-model")
                      or {}).get("spec", {}).get("replicas") == 2, what="scaled to minReplicas")
    cluster.kube.patch(AISTACK, namespace, "support-copilot", {"spec": {"gateway": {"autoscaling": None}}})
    wait_for(lambda: not cluster.emulator.find("horizontalpodautoscalers", namespace,
                                               "support-copilot-gateway"),
             what="HPA pruned")
    bad = stack_doc("quickstart", namespace)
    bad["spec"]["model"]["provider"] = "tgi"
    cluster.apply_stack(bad)
    wait_for(lambda: cluster.events(namespace, "InvalidSpec"), what="InvalidSpec event")
    for name in ("support-copilot", "external", "quickstart"):
        cluster.kube.delete(AISTACK, namespace, name)
        wait_for(lambda name=name: cluster.stack(namespace, name) is None, what=f"{name} deleted")

    test_client = {("POST", f"/api/v1/namespaces/{namespace}/secrets")}
    rules = cluster_role()
    used = set()
    denied = []
    for method, path in cluster.emulator.log:
        if (method, path) in test_client or path.startswith(
                f"/apis/{AISTACK.api_version}/namespaces/{namespace}/aistacks") \
                and method in ("POST", "DELETE", "GET") and not path.endswith("/status"):
            continue  # the test acting as a user (kubectl apply/delete/get)
        perm = permission(method, path)
        if perm is None:
            continue
        used.add(perm)
        if not allowed(rules, *perm):
            denied.append((method, path, perm))
    assert not denied, f"calls not allowed by {RBAC.name}: {sorted(set(denied))[:10]}"
    assert ("aistack.dev", "aistacks/status", "patch") in used
    assert {("apps", "deployments/scale", "patch"), ("rbac.authorization.k8s.io", "roles", "create"),
            ("coordination.k8s.io", "leases", "create")} <= used
    secret_calls = [(m, p) for m, p in cluster.emulator.log[since:]
                    if "/secrets" in p and (m, p) not in test_client]
    assert secret_calls == [], "the operator read a Secret"
    assert not any("secrets" in rule["resources"] for rule in rules), "the ClusterRole grants Secrets"
    assert since < len(cluster.emulator.log)


def test_peering_and_leader_election_calls_are_allowed(qdrant, stack_doc) -> None:
    """As deployed (peering on, --leader-elect): the Lease calls are allowed by the Role in the
    operator's namespace, the peering calls by the ClusterRole."""
    system = "aistack-system"
    with EmulatorThread() as thread:
        cluster = Cluster(thread)
        cluster.add_peering()
        for name in (system, "apps"):
            cluster.add_namespace(name)
        since = len(cluster.emulator.log)
        replica = OperatorThread(cluster, qdrant, peering=PeeringOptions(priority=100, mandatory=True),
                                 leader=LeaseOptions(namespace=system, duration=3, renew_deadline=2,
                                                     retry_period=0.2))
        with replica:
            cluster.apply_stack(stack_doc("quickstart", "apps"))
            cluster.wait_phase("apps", "quickstart", "Ready")
            time.sleep(0.5)  # a few renewals
        calls = cluster.emulator.log[since:]
    cluster_rules, lease_rules = cluster_role(), cluster_role("Role")
    used, denied = set(), []
    for method, path in calls:
        if path.startswith(f"/apis/{AISTACK.api_version}/namespaces/apps/aistacks") and method in ("POST",
                                                                                                   "GET"):
            continue  # the test acting as a user (kubectl apply/get)
        perm = permission(method, path)
        if perm is None:
            continue
        used.add(perm)
        rules = lease_rules if path.startswith(
            f"/apis/coordination.k8s.io/v1/namespaces/{system}/") else cluster_rules
        if not allowed(rules, *perm):
            denied.append((method, path, perm))
    assert not denied, f"calls not allowed by {RBAC.name}: {sorted(set(denied))[:10]}"
    assert {("coordination.k8s.io", "leases", "get"), ("coordination.k8s.io", "leases", "create"),
            ("coordination.k8s.io", "leases", "patch"), ("kopf.dev", "clusterkopfpeerings", "watch"),
            ("kopf.dev", "clusterkopfpeerings", "patch")} <= used


def test_declared_calls_are_allowed_and_nothing_more_is_granted() -> None:
    rules = cluster_role()
    resources = {k.kind: (k.group, k.plural) for k in (*CHILD_KINDS.values(), AISTACK)}
    resources["Event"] = ("", "events")
    resources[f"{AISTACK.kind}/status"] = (AISTACK.group, f"{AISTACK.plural}/status")
    resources["Deployment/scale"] = ("apps", "deployments/scale")
    for kind, verb in CALLS:
        group, resource = resources[kind]
        assert allowed(rules, group, resource, verb), (kind, verb)
    # Nothing broader than needed: no wildcards, no Secrets at all, no cluster-admin verbs.
    for rule in rules:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"]
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])
    assert not [r for r in rules if "secrets" in r["resources"]]
    assert not [call for call in CALLS if call[0] == "Secret"]
