"""AIStackOperator: the generated CRD verbatim, least-privilege RBAC, a hardened operator
Deployment, the MLflow backend Secret, and an optional AIStack with its gateway URL."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from aistack.api.conventions import GPU_TAINT_KEY, PEERING_NAME, child_name
from aistack.api.manifests import load_stack
from aistack.platform.operator_install import (
    gateway_url,
    operator_image,
    with_accounts,
    workload_account_name,
)
from aistack.platform.operator_manifests import BASE_ARGS, operator_args
from aistack.platform.operator_rbac import operator_cluster_rules
from aistack.testing.pulumi_mocks import STAGES, Run, is_secret_value, run_program, stage_config

ROOT = Path(__file__).resolve().parents[3]

CRD = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"


@pytest.mark.parametrize("stage", STAGES)
def test_crd_is_the_generated_file_verbatim(stage_runs: dict[str, Run], stage: str) -> None:
    generated = yaml.safe_load((ROOT / "crds" / "aistack.dev_aistacks.yaml").read_text())
    [crd] = [r for r in stage_runs[stage].of_type(CRD)
             if r.inputs["metadata"]["name"] == "aistacks.aistack.dev"]
    assert crd.inputs["spec"] == generated["spec"]
    assert crd.inputs["metadata"] == generated["metadata"]


def test_rbac_is_least_privilege() -> None:
    rules = operator_cluster_rules()
    flat = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}
    resources = {r for _, r, _ in flat}
    assert not any("*" in x for rule in rules for x in rule["apiGroups"] + rule["resources"] + rule["verbs"])
    assert not resources & {"secrets", "pods", "clusterroles", "clusterrolebindings", "nodes"}
    # Roles and RoleBindings (the gateways' right to write their load Lease) only as the API server's
    # escalation check allows: what the operator holds itself, never bind, escalate or impersonate
    assert not {v for _, _, v in flat} & {"bind", "escalate", "impersonate", "deletecollection"}
    assert ("apps", "deployments/scale", "patch") in flat
    assert ("apps", "deployments/scale", "update") not in flat
    # what it reconciles and writes status to
    assert {("aistack.dev", "aistacks", "watch"), ("aistack.dev", "aistacks/status", "patch"),
            ("aistack.dev", "aistacks/finalizers", "update")} <= flat
    for group, resource in [("apps", "deployments"), ("apps", "statefulsets"), ("", "services"),
                            ("", "configmaps"),
                            ("", "persistentvolumeclaims"), ("autoscaling", "horizontalpodautoscalers")]:
        assert {(group, resource, v) for v in ("get", "list", "watch", "create", "patch", "delete")} <= flat
        assert (group, resource, "update") not in flat
    # kopf's own needs, read-only on cluster objects
    assert {(g, r, v) for g, r, v in flat if r in ("namespaces", "customresourcedefinitions")} == {
        ("", "namespaces", "list"), ("", "namespaces", "watch"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }
    assert ("kopf.dev", "clusterkopfpeerings", "patch") in flat
    assert {v for g, r, v in flat if r == "events"} == {"create"}
    assert not {v for g, r, v in flat if r == "aistacks"} & {"create", "delete", "update"}


def test_cluster_role_binding_and_service_account_match(stage_runs: dict[str, Run]) -> None:
    run = stage_runs["dev"]
    role = run.one("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole").inputs
    assert role["rules"] == operator_cluster_rules()
    binding = run.one("kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding").inputs
    sa = run.one("kubernetes:core/v1:ServiceAccount", "-sa").inputs["metadata"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"],
                                    "namespace": sa["namespace"]}]


@pytest.mark.parametrize("stage", STAGES)
def test_operator_deployment_is_hardened_and_uses_the_versioned_image(stage_runs: dict[str, Run],
                                                                      stage: str) -> None:
    run = stage_runs[stage]
    dep = run.one("kubernetes:apps/v1:Deployment").inputs
    assert dep["metadata"]["namespace"] == "aistack-system"
    assert dep["spec"]["replicas"] == (2 if stage == "prod" else 1)
    pod = dep["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == operator_image() == run.outputs["operatorImage"]
    assert container["image"].startswith("ghcr.io/aistack-dev/operator:")
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = container["securityContext"]
    assert sc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                  "capabilities": {"drop": ["ALL"]}}
    assert pod[
        "serviceAccountName"] == run.one(
            "kubernetes:core/v1:ServiceAccount", "-sa").inputs["metadata"]["name"]
    assert "tolerations" not in pod and GPU_TAINT_KEY not in json.dumps(pod)
    assert container["resources"]["limits"]["memory"]
    ns = run.one("kubernetes:core/v1:Namespace", "-ns").inputs["metadata"]
    assert ns["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("stage", STAGES)
def test_replicas_elect_a_leader_and_join_the_peering_this_program_installs(stage_runs: dict[str, Run],
                                                                            stage: str) -> None:
    """Replicas share a priority, and kopf peering pauses operators of equal priority: without
    leader election two replicas would both stop. And the peering object must carry the name
    the operator looks for, or kopf waits for it forever."""
    run = stage_runs[stage]
    [container] = run.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["spec"]["containers"]
    assert "--leader-elect" in container["args"] and "--standalone" not in container["args"]
    # waits for the object below, never runs unguarded
    assert f"--peering={PEERING_NAME}" in container["args"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_ID": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    peering = run.one("kubernetes:kopf.dev/v1:ClusterKopfPeering").inputs
    assert peering["metadata"]["name"] == PEERING_NAME
    role = run.one("kubernetes:rbac.authorization.k8s.io/v1:Role").inputs
    assert role["metadata"]["namespace"] == "aistack-system"
    assert _flat(role["rules"]) == {("coordination.k8s.io", "leases", v) for v in ("get", "create", "patch")}
    binding = run.one("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding").inputs
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "aistack-operator",
                                    "namespace": "aistack-system"}]


def test_operator_image_can_be_overridden() -> None:
    assert operator_image(tag="1.2.3") == "ghcr.io/aistack-dev/operator:1.2.3"
    assert operator_image(
        image="registry.example.com/op@sha256:abc", tag="1.2.3") == "registry.example.com/op@sha256:abc"
    config = stage_config("dev", project=ROOT)
    operator = json.loads(config["aistack:operator"]) | {"version": "9.9.9", "args": ["--verbose"]}
    run = run_program(config | {"aistack:operator": json.dumps(operator)}, stack="dev", project=ROOT)
    [container] = run.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/aistack-dev/operator:9.9.9"
    assert container["args"] == ["--priority=100", "--leader-elect", f"--peering={PEERING_NAME}", "--verbose"]


def test_stack_file_creates_the_aistack_after_the_operator_and_exports_its_gateway_url() -> None:
    config = stage_config("dev", project=ROOT)
    operator = json.loads(config["aistack:operator"]) | {"stackFile": "examples/quickstart.yaml"}
    run = run_program(config | {"aistack:operator": json.dumps(operator)}, stack="dev", project=ROOT)
    stack = load_stack(ROOT / "examples" / "quickstart.yaml")
    cr = run.one("kubernetes:aistack.dev/v1alpha1:AIStack").inputs
    assert cr["metadata"] == {"name": stack.name, "namespace": "aistack"}
    assert cr["spec"] == with_accounts(stack.spec.to_wire(),
                                       {"gateway": "aistack-gateway", "tracking": "aistack-tracking"})
    assert cr[
        "spec"]["gateway"]["serviceAccountName"] == run.outputs["gatewayServiceAccount"] == "aistack-gateway"
    assert run.outputs[
        "gatewayUrl"] == f"http://{child_name(stack.name, 'gateway')}.aistack.svc.cluster.local:8080"


def test_workload_accounts_carry_the_irsa_roles_their_trust_policies_name(stage_runs: dict[str, Run]) -> None:
    """The roles trust `*-gateway` / `*-tracking` accounts of the workload namespace: the
    accounts created match those patterns and are annotated with their role, and no API token
    is mounted through them."""
    run = stage_runs["dev"]
    roles = {r.name: r for r in run.of_type("aws:iam/role:Role")}
    for component, role_suffix in (("gateway", "-gateway"), ("tracking", "-mlflow")):
        account = run.one("kubernetes:core/v1:ServiceAccount", f"-account-{component}").inputs
        assert account["metadata"]["name"] == f"aistack-{component}"
        assert account["metadata"]["namespace"] == "aistack"
        assert account["automountServiceAccountToken"] is False
        [role] = [r for name, r in roles.items() if name.endswith(role_suffix)]
        arn = f"arn:aws:iam:us-west-2:123456789012:{role.name}"  # the ARN the mocks give that role
        assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": arn}
        trust = json.loads(role.inputs["assumeRolePolicy"])
        subject = json.dumps(trust)
        assert f"system:serviceaccount:aistack:*-{component}" in subject
    assert workload_account_name(
        "*-gateway") == "aistack-gateway" and workload_account_name("rag-gw") == "rag-gw"


def test_accounts_a_manifest_names_are_kept() -> None:
    spec = {"gateway": {"serviceAccountName": "mine"},
            "observability": {"mlflow": {"managed": {"serviceAccountName": "ours"}}}}
    assert with_accounts(spec, {"gateway": "aistack-gateway", "tracking": "aistack-tracking"}) == spec
    external = {"observability": {"mlflow": {"external": {"trackingUri": "https://mlflow.example.com"}}}}
    assert with_accounts(external, {"tracking": "aistack-tracking"}) == external  # no MLflow pods to run


def test_gateway_url_follows_the_operators_child_naming() -> None:
    assert gateway_url(stack_name="support-copilot", namespace="ai-prod") == (
        f"http://{child_name('support-copilot', 'gateway')}.ai-prod.svc.cluster.local:8080"
    )


def as_manifest(inputs: dict) -> dict:
    """A recorded Kubernetes resource's inputs as the manifest the provider would send
    (secret values unwrapped)."""
    return {k: (v["value"] if is_secret_value(v) else v) for k, v in inputs.items()}


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_kubernetes_objects_are_valid_against_the_kubernetes_schema(stage_runs: dict[str, Run],
                                                                    stage: str) -> None:
    """Every built-in Kubernetes object the program declares passes the API's OpenAPI schema
    (strict: unknown fields are errors); CRD instances and Helm releases are not built-ins."""
    checked = 0
    for r in stage_runs[stage].resources:
        if not r.type.startswith("kubernetes:") or r.type.startswith(("kubernetes:helm.sh",
                                                                      "kubernetes:kopf.dev",
                                                                      "kubernetes:aistack.dev")):
            continue
        manifest = as_manifest(r.inputs)
        assert kubernetes_validate.validate(manifest, "1.32", strict=True), r.name
        checked += 1
    assert checked >= 9


def _flat(rules: list[dict]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def test_standalone_in_the_given_args_drops_the_named_peering() -> None:
    """The operator refuses --standalone with --peering: given args win, so the base one goes."""
    assert operator_args(["--standalone"]) == ["--priority=100", "--leader-elect", "--standalone"]
    assert operator_args(["--peering=team"]) == [*BASE_ARGS, "--peering=team"]  # the last one wins
