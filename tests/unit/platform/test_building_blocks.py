"""Pure helpers of the platform components: subnets, taints, kubeconfig, URIs, documents."""

from __future__ import annotations

import json

import pytest

from aistack.platform.gpu_cluster import eks_taint
from aistack.platform.gpu_nodes import gpu_node_taint
from aistack.platform.iam_documents import bucket_access, irsa_trust
from aistack.platform.kubeconfig import build_kubeconfig
from aistack.platform.managed_stores import backend_store_uri, parameter_group_family
from aistack.platform.network import subnet_cidrs
from aistack.platform.secure_bucket import tls_only_policy


def test_subnets_do_not_overlap_and_fit_the_vpc() -> None:
    public, private = subnet_cidrs("10.40.0.0/16", 3)
    assert public == ["10.40.0.0/20", "10.40.16.0/20", "10.40.32.0/20"]
    assert private == ["10.40.48.0/20", "10.40.64.0/20", "10.40.80.0/20"]
    with pytest.raises(ValueError, match="too small"):
        subnet_cidrs("10.40.0.0/20", 2)


def test_kubernetes_taint_becomes_the_eks_api_form() -> None:
    assert eks_taint(gpu_node_taint()) == {"key": "nvidia.com/gpu", "value": "present",
                                           "effect": "NO_SCHEDULE"}
    assert eks_taint({"key": "k", "value": "v",
                      "effect": "PreferNoSchedule"})["effect"] == "PREFER_NO_SCHEDULE"


def test_kubeconfig_uses_aws_eks_get_token_and_holds_no_credential() -> None:
    cfg = build_kubeconfig(cluster_name="c", endpoint="https://e", ca_data="Q0E=", region="eu-west-1")
    assert cfg["current-context"] == "c"
    assert cfg["users"][0]["user"]["exec"]["args"][:4] == ["eks", "get-token", "--cluster-name", "c"]
    assert "token" not in json.dumps(cfg["users"][0]["user"]).replace("get-token", "")


def test_backend_store_uri_escapes_the_password_and_requires_tls() -> None:
    uri = backend_store_uri(password="p@ss/w:rd", host="db.example", port=5432)
    assert uri == "postgresql://mlflow:p%40ss%2Fw%3Ard@db.example:5432/mlflow?sslmode=require"
    assert parameter_group_family("16.4") == "postgres16" and parameter_group_family("17") == "postgres17"


def test_irsa_trust_is_bound_to_namespace_service_account_and_audience() -> None:
    doc = json.loads(irsa_trust(oidc_provider_arn="arn:p", oidc_issuer_url="https://oidc.x/id/1",
                                namespace="ns", service_account="sa"))
    [stmt] = doc["Statement"]
    assert stmt["Principal"] == {"Federated": "arn:p"} and stmt["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert stmt["Condition"] == {"StringEquals": {"oidc.x/id/1:aud": "sts.amazonaws.com"},
                                 "StringLike": {"oidc.x/id/1:sub": "system:serviceaccount:ns:sa"}}


def test_bucket_access_is_read_only_unless_write() -> None:
    read = json.loads(bucket_access(bucket_arn="arn:aws:s3:::b", kms_key_arn="arn:k", write=False))
    write = json.loads(bucket_access(bucket_arn="arn:aws:s3:::b", kms_key_arn="arn:k", write=True))
    actions = lambda doc: {a for s in doc["Statement"] for a in s["Action"]}  # noqa: E731
    assert actions(read) == {"s3:ListBucket", "s3:GetBucketLocation", "s3:GetObject", "kms:Decrypt"}
    assert {"s3:PutObject", "s3:DeleteObject", "kms:GenerateDataKey"} <= actions(write)


def test_tls_only_policy_denies_insecure_transport_to_everyone() -> None:
    [stmt] = json.loads(tls_only_policy("arn:aws:s3:::b"))["Statement"]
    assert stmt["Effect"] == "Deny" and stmt["Principal"] == "*" and stmt["Action"] == "s3:*"
    assert stmt["Resource"] == ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]
