"""Install manifests: the kustomization lists every file, the CRD is the generated one, the
operator pod is locked down."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from aistack.api.crd import build_crd

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy" / "operator"


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def test_kustomization_includes_crd_rbac_and_operator() -> None:
    kustomization = docs(DEPLOY / "kustomization.yaml")[0]
    resources = kustomization["resources"]
    assert "../../crds" in resources
    for entry in resources:
        assert (DEPLOY / entry).exists(), entry
    assert docs(ROOT / "crds" / "aistack.dev_aistacks.yaml")[0] == build_crd()
    kinds = {d["kind"] for entry in resources if entry.endswith(".yaml") for d in docs(DEPLOY / entry)}
    assert {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"} <= kinds


def test_operator_pod_is_non_root_with_limits_and_liveness() -> None:
    deployment = docs(DEPLOY / "deployment.yaml")[0]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "aistack-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "aistack.operator"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_kustomize_builds() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], check=True, capture_output=True,
                         text=True).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(out) if d]
    assert kinds.count("CustomResourceDefinition") == 3


def test_replicas_elect_a_leader_and_the_peering_object_is_the_one_the_operator_reads() -> None:
    """Replicas share a priority, which kopf peering answers by pausing them all: the Lease
    picks one. The peering object must carry the name the operator waits for."""
    from aistack.api.conventions import PEERING_NAME

    container = docs(DEPLOY / "deployment.yaml")[0]["spec"]["template"]["spec"]["containers"][0]
    assert "--leader-elect" in container["args"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_ID": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    [peering] = [d for d in docs(DEPLOY / "peering.yaml") if d["kind"] == "ClusterKopfPeering"]
    assert peering["metadata"]["name"] == PEERING_NAME
    [role] = [d for d in docs(DEPLOY / "rbac.yaml") if d["kind"] == "Role"]
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "patch"]}]
    [binding] = [d for d in docs(DEPLOY / "rbac.yaml") if d["kind"] == "RoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"] == "aistack-system"
