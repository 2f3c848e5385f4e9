"""What every rendered object carries (common.py's labels, owner, security, Secret references and
service accounts), and the order and determinism of the whole render."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml

from aistack.api.conventions import (
    CONFIG_HASH_ANNOTATION,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
)
from aistack.api.v1alpha1.stack import _SECRET_VALUES
from aistack.operator.render import KIND_ORDER, render

UID = "0b6f0c5e-0000-4000-8000-000000000001"
VERSION = "9.9.9"
LITERAL_ENV_ALLOWED = {"HOME", "HF_HOME", "AISTACK_GATEWAY_CONFIG", "QDRANT__TELEMETRY_DISABLED",
                       "HF_HUB_OFFLINE"}


@pytest.mark.parametrize("name", ["quickstart", "rag", "production"])
def test_every_object_has_labels_owner_and_namespace(make_stack, name: str) -> None:
    stack = make_stack(name, uid=UID)
    for m in render(stack, version=VERSION).manifests:
        meta = m["metadata"]
        assert meta["namespace"] == stack.namespace
        assert meta["labels"][LABEL_NAME] == "aistack"
        assert meta["labels"][LABEL_INSTANCE] == stack.name
        assert meta["labels"][LABEL_PART_OF] == "aistack"
        assert meta["labels"][LABEL_MANAGED_BY] == "aistack-operator"
        assert meta["labels"][LABEL_COMPONENT]
        if m["kind"] == "PersistentVolumeClaim" and meta["name"].endswith("-mlflow-data"):
            assert "ownerReferences" not in meta  # runs outlive the stack
            continue
        assert meta["ownerReferences"] == [{"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack",
                                            "name": stack.name, "uid": UID, "controller": True,
                                            "blockOwnerDeletion": True}]


def test_without_uid_no_owner_references(make_stack) -> None:
    assert all("ownerReferences" not in m["metadata"] for m in render(make_stack("production")).manifests)


@pytest.mark.parametrize("name", ["quickstart", "rag", "production"])
def test_render_is_deterministic_and_ordered(make_stack, name: str) -> None:
    first = render(make_stack(name), version=VERSION).manifests
    assert first == render(make_stack(name), version=VERSION).manifests
    keys = [(KIND_ORDER.index(m["kind"]), m["metadata"]["name"]) for m in first]
    assert keys == sorted(keys)
    assert len({(m["kind"], m["metadata"]["name"]) for m in first}) == len(first)


@pytest.mark.parametrize("name", ["quickstart", "rag", "production"])
def test_manifests_pass_kubernetes_schema(make_stack, name: str) -> None:
    for m in render(make_stack(name, uid=UID), version=VERSION).manifests:
        kubernetes_validate.validate(m, "1.32", strict=True)


@pytest.mark.parametrize("name", ["quickstart", "rag", "production"])
def test_pods_run_non_root_and_selectors_match(make_stack, name: str) -> None:
    for m in render(make_stack(name), version=VERSION).manifests:
        if m["kind"] not in ("Deployment", "StatefulSet"):
            continue
        template = m["spec"]["template"]
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
        assert CONFIG_HASH_ANNOTATION in template["metadata"]["annotations"]
        selector = m["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items()
        for c in template["spec"]["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for m in render(make_stack(name), version=VERSION).manifests:
        if m["kind"] == "Service":
            workload = [w for w in render(make_stack(name), version=VERSION).manifests
                        if w["kind"] in ("Deployment", "StatefulSet")
                        and m["metadata"]["name"] in (w["metadata"]["name"],
                                                      f"{w['metadata']['name']}-replicas")]
            assert workload, f"Service {m['metadata']['name']} selects no workload"
            assert m["spec"]["selector"] == workload[0]["spec"]["selector"]["matchLabels"]


def test_every_secret_is_a_secret_key_ref_and_never_a_literal(make_stack, by_kind_name, containers,
                                                               all_secrets) -> None:
    stack = make_stack("production", all_secrets)
    manifests = render(stack).manifests
    text = yaml.safe_dump_all(manifests)
    assert not _SECRET_VALUES.search(text)
    refs = {}
    for c in containers(manifests):
        for e in c.get("env", []):
            if "valueFrom" in e:
                ref = e["valueFrom"]["secretKeyRef"]
                refs[(ref["name"], ref["key"])] = e["name"]
            elif e["name"] == "OPENAI_API_KEY":
                assert e["value"] == "EMPTY"  # vLLM in the cluster takes no key
            elif e["name"] == "MLFLOW_TRACKING_TOKEN":
                assert e["value"] == "$(AISTACK_SECRET_ML_K5)"  # expanded by the kubelet
            else:
                assert e["name"] in LITERAL_ENV_ALLOWED, e
    expected = {("fb", "k1"), ("qd", "k2"), ("emb", "k3"), ("tool", "k4"), ("ml", "k5"),
                ("hf-token", "token"),
                ("support-copilot-keys", "keys")}
    assert expected <= refs.keys()
    assert refs[("qd", "k2")] == "AISTACK_SECRET_QD_K2"
    # The gateway config names each of its secrets by the env var the pod fills.
    config = by_kind_name(manifests)[("ConfigMap", "support-copilot-gateway-config")]["data"]["config.yaml"]
    for env_name in ("AISTACK_SECRET_FB_K1", "AISTACK_SECRET_QD_K2", "AISTACK_SECRET_EMB_K3",
                     "AISTACK_SECRET_TOOL_K4", "AISTACK_SECRET_ML_K5"):
        assert env_name in config
    for m in manifests:
        if m["kind"] == "ConfigMap":
            assert "secretKeyRef" not in str(m["data"])
    # The Jobs get exactly the secrets they use, by the same env names, and never as args.
    jobs = {m["metadata"]["labels"][LABEL_COMPONENT]: m["spec"]["template"]["spec"]["containers"][0]
            for m in manifests if m["kind"] == "Job"}
    secret_envs = {k: {e["name"] for e in c["env"] if "valueFrom" in e} for k, c in jobs.items()}
    assert secret_envs == {"ingestion": {"AISTACK_SECRET_EMB_K3", "AISTACK_SECRET_QD_K2"},
                           "evaluation": {"AISTACK_SECRET_ML_K5", "AISTACK_SECRET_SUPPORT_COPILOT_KEYS_KEYS"},
                           "collection": {"AISTACK_SECRET_QD_K2"}}  # the external Qdrant's key
    # The manifest ConfigMap holds Secret references (names), nothing read from a Secret.
    manifest = by_kind_name(manifests)[("ConfigMap", "support-copilot-manifest")]["data"]["aistack.yaml"]
    assert "tokenSecretRef" in manifest and "valueFrom" not in manifest


def test_cloud_roles_come_through_named_service_accounts_and_no_api_token_is_mounted(make_stack,
                                                                                    pod_specs) -> None:
    """IRSA: the gateway and the ingestion Job (which reads the `s3://` sources) run as the
    gateway's account, MLflow (which writes the `s3://` artifacts) as its own; the evaluation
    Job needs no cloud access. No pod gets a Kubernetes API token."""
    plain = render(make_stack("production")).manifests
    assert all("serviceAccountName" not in pod for pod in pod_specs(plain))
    manifests = render(make_stack("production", {"spec": {
        "gateway": {"serviceAccountName": "aistack-gateway"},
        "observability": {"mlflow": {"managed": {"serviceAccountName": "aistack-tracking"}}}}})).manifests
    accounts = {(m["kind"], m["metadata"]["labels"][LABEL_COMPONENT]): m["spec"]["template"]["spec"].get(
        "serviceAccountName") for m in manifests if m["kind"] in ("Deployment", "StatefulSet", "Job")}
    assert accounts[("Deployment", "gateway")] == "aistack-gateway"
    assert accounts[("Job", "ingestion")] == "aistack-gateway"
    assert accounts[("Deployment", "tracking")] == "aistack-tracking"
    assert accounts[("Job", "evaluation")] is None
    assert all(pod.get("automountServiceAccountToken") is False for pod in pod_specs(manifests)
               if "serviceAccountName" in pod)


def test_names_fit_dns_labels(make_stack) -> None:
    long_name = "a" + "b" * 39
    stack = make_stack("production", {"metadata": {"name": long_name}})
    for m in render(stack).manifests:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", m["metadata"]["name"])
        assert len(m["metadata"]["name"]) <= 63
