"""The policy pack: every check passes on our stacks and fails on a deliberately broken variant.

Running each check over every resource the mocked program registers approximates
`pulumi preview --policy-pack stacks/policy` (no engine exists here to run the pack itself).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pulumi_policy import (PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs,
                           ResourceValidationPolicy)

from aistack.platform import policies as p
from aistack.testing.pulumi_mocks import STAGES, Res, Run


def broken(run: Run, type_: str, name_contains: str = "", **changes: Any) -> Res:
    """A copy of one of our resources with `changes` applied (None deletes a property)."""
    res = copy.deepcopy(next(r for r in run.of_type(type_) if name_contains in r.name))
    for key, value in changes.items():
        if value is None:
            res.inputs.pop(key, None)
        else:
            res.inputs[key] = value
    return res


def found(res: Res) -> dict[str, list[str]]:
    return p.violations(res.type, res.inputs, res.urn)


@pytest.mark.parametrize("stage", STAGES)
def test_our_stacks_pass_every_policy(stage_runs: dict[str, Run], stage: str) -> None:
    failures = {f"{r.type} {r.name}": v for r in stage_runs[stage].resources if (v := found(r))}
    assert failures == {}


def test_every_policy_applies_to_something_in_prod(stage_runs: dict[str, Run]) -> None:
    """Guard against checks that silently match no resource type of ours."""
    types = {r.type for r in stage_runs["prod"].resources}
    for needed in (p.BUCKET, p.PUBLIC_ACCESS_BLOCK, p.BUCKET_POLICY, p.BUCKET_SSE_TYPES[0], p.RDS_INSTANCE,
                   p.NODE_GROUP, p.EKS_CLUSTER, p.SECURITY_GROUP):
        assert needed in types


def test_public_bucket_is_caught(stage_runs: dict[str, Run]) -> None:
    run = stage_runs["dev"]
    assert "s3-no-public-bucket" in found(broken(run, p.PUBLIC_ACCESS_BLOCK, blockPublicPolicy=False))
    assert "s3-no-public-bucket" in found(broken(run, p.PUBLIC_ACCESS_BLOCK, restrictPublicBuckets=None))
    assert "s3-no-public-bucket" in found(broken(run, p.BUCKET, acl="public-read"))
    open_policy = {"Version": "2012-10-17",
                   "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject",
                                  "Resource": "*"}]}
    result = found(broken(run, p.BUCKET_POLICY, policy=json.dumps(open_policy)))
    assert {"s3-no-public-bucket", "s3-tls-only"} <= set(result)


def test_bucket_without_kms_encryption_is_caught(stage_runs: dict[str, Run]) -> None:
    rules = [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
    assert "s3-sse-kms" in found(broken(stage_runs["dev"], p.BUCKET_SSE_TYPES[0], rules=rules))
    assert "s3-sse-kms" in found(broken(stage_runs["dev"], p.BUCKET_SSE_TYPES[0], rules=[]))


def test_unencrypted_or_public_database_is_caught(stage_runs: dict[str, Run]) -> None:
    run = stage_runs["staging"]
    assert found(
        broken(run, p.RDS_INSTANCE, storageEncrypted=False))[
            "rds-encrypted-private"] == ["storageEncrypted must be true"]
    assert found(
        broken(run, p.RDS_INSTANCE, publiclyAccessible=True))[
            "rds-encrypted-private"] == ["publiclyAccessible must be false"]


def test_untainted_or_unlabelled_gpu_node_group_is_caught(stage_runs: dict[str, Run]) -> None:
    run = stage_runs["dev"]
    no_taint = found(broken(run, p.NODE_GROUP, "gpu", taints=None))["gpu-node-groups-tainted"]
    assert no_taint == ["GPU node group must carry the taint nvidia.com/gpu:NoSchedule"]
    wrong_effect = [{"key": "nvidia.com/gpu", "value": "present", "effect": "PREFER_NO_SCHEDULE"}]
    assert "gpu-node-groups-tainted" in found(broken(run, p.NODE_GROUP, "gpu", taints=wrong_effect))
    assert "gpu-node-groups-tainted" in found(broken(run, p.NODE_GROUP, "gpu", labels={}))
    # A GPU instance type on a standard AMI is still a GPU node group.
    system_on_gpu = broken(run, p.NODE_GROUP, "system", instanceTypes=["p5.48xlarge"])
    assert "gpu-node-groups-tainted" in found(system_on_gpu)
    assert found(broken(run, p.NODE_GROUP, "system")) == {}


def test_cluster_without_secrets_encryption_is_caught(stage_runs: dict[str, Run]) -> None:
    run = stage_runs["dev"]
    assert "eks-secrets-encryption" in found(broken(run, p.EKS_CLUSTER, encryptionConfig=None))
    assert "eks-secrets-encryption" in found(broken(run, p.EKS_CLUSTER,
                                                    encryptionConfig={"resources": ["secrets"],
                                                                      "provider": {}}))


def test_open_ingress_is_caught_except_a_load_balancer_on_443(stage_runs: dict[str, Run]) -> None:
    run = stage_runs["dev"]
    world_db = [{"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrBlocks": ["0.0.0.0/0"]}]
    assert "no-open-ingress" in found(broken(run, p.SECURITY_GROUP, ingress=world_db))
    world_v6 = [{"protocol": "-1", "fromPort": 0, "toPort": 0, "ipv6CidrBlocks": ["::/0"]}]
    assert "no-open-ingress" in found(broken(run, p.SECURITY_GROUP, ingress=world_v6))
    https = [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["0.0.0.0/0"]}]
    lb_tags = {"aistack.dev/stage": "dev", "aistack.dev/role": "load-balancer"}
    assert found(broken(run, p.SECURITY_GROUP, ingress=https, tags=lb_tags)) == {}
    ssh = [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]
    assert "no-open-ingress" in found(broken(run, p.SECURITY_GROUP, ingress=ssh, tags=lb_tags))
    assert "no-open-ingress" in found(broken(run, p.SECURITY_GROUP, ingress=https))  # not a load balancer
    rule = {"type": "ingress", "protocol": "tcp", "fromPort": 5432, "toPort": 5432,
            "cidrBlocks": ["0.0.0.0/0"]}
    assert p.check_no_open_ingress(p.SECURITY_GROUP_RULE, rule, "") != []
    assert p.check_no_open_ingress(p.SECURITY_GROUP_RULE, {**rule, "type": "egress"}, "") == []
    vpc_rule = {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "0.0.0.0/0"}
    assert p.check_no_open_ingress(p.INGRESS_RULE, vpc_rule, "") != []


def test_prod_without_deletion_protection_is_caught_and_dev_is_not(stage_runs: dict[str, Run]) -> None:
    prod = stage_runs["prod"]
    msgs = found(broken(prod, p.RDS_INSTANCE,
                        deletionProtection=False, multiAz=False))["prod-deletion-protection"]
    assert msgs == ["deletionProtection must be true in prod", "multiAz must be true in prod"]
    assert "prod-deletion-protection" in found(broken(prod, p.EKS_CLUSTER, deletionProtection=False))
    dev_db = stage_runs["dev"].one(p.RDS_INSTANCE)
    assert dev_db.inputs["deletionProtection"] is False and found(dev_db) == {}


def test_stage_comes_from_the_tag_else_the_stack_name() -> None:
    assert p.stage_of({"tags": {"aistack.dev/stage": "prod"}}, "urn:pulumi:dev::aistack::t::n") == "prod"
    assert p.stage_of({}, "urn:pulumi:prod::aistack::aws:rds/instance:Instance::db") == "prod"
    assert p.stage_of({}, "urn:pulumi:acme/prod::aistack::t::n") == "prod"
    untagged = {"storageEncrypted": True, "deletionProtection": False, "multiAz": True}
    assert p.check_prod_deletion_protection(p.RDS_INSTANCE, untagged, "urn:pulumi:prod::aistack::t::db") != []


def validation_args(res: Res) -> ResourceValidationArgs:
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    return ResourceValidationArgs(res.type, res.inputs, res.urn, res.name, opts, None)


def run_policy(policy: ResourceValidationPolicy, res: Res) -> list[str]:
    reported: list[str] = []
    policy.validate(validation_args(res), lambda message, urn=None: reported.append(message))
    return reported


def test_pack_policies_report_through_pulumi_policy(stage_runs: dict[str, Run]) -> None:
    """The same checks wrapped as pulumi-policy ResourceValidationPolicies (what the pack
    registers), called the way the policy engine calls them."""
    pack = {policy.name: policy for policy in p.build_policies()}
    assert set(pack) == set(p.CHECKS)
    run = stage_runs["prod"]
    for res in run.resources:
        for policy in pack.values():
            assert run_policy(policy, res) == [], (policy.name, res.name)
    bad_db = broken(run, p.RDS_INSTANCE, publiclyAccessible=True, deletionProtection=False)
    assert run_policy(pack["rds-encrypted-private"], bad_db) == ["publiclyAccessible must be false"]
    assert run_policy(pack["prod-deletion-protection"], bad_db) == ["deletionProtection must be true in prod"]
    bad_group = broken(run, p.NODE_GROUP, "gpu-l4", taints=None)
    assert run_policy(pack["gpu-node-groups-tainted"], bad_group) != []
