"""The platform's guarantees as policy checks: plain functions over one resource's properties.

Each `check_*` takes the resource type, its properties (the engine's camelCase form) and its
URN, and returns violation messages; `build_policies()` wraps them as pulumi-policy
`ResourceValidationPolicy`s for the pack in `stacks/policy/` (`pulumi preview --policy-pack
stacks/policy`). Keeping them plain makes them testable without a policy engine, and lets the
tests run them over every resource of the mocked stacks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from aistack.api.conventions import GPU_TAINT_KEY, GPU_TYPE_LABEL
from aistack.platform.tags import STAGE_TAG

Props = Mapping[str, Any]
Check = Callable[[str, Props, str], list[str]]

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_ACL_TYPES = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
BUCKET_SSE_TYPES = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"

PUBLIC_ACLS = {"public-read", "public-read-write", "authenticated-read"}
OPEN_CIDRS = {"0.0.0.0/0", "::/0"}
LOAD_BALANCER_ROLE = ("aistack.dev/role", "load-balancer")
LOAD_BALANCER_PORTS = {80, 443}
GPU_INSTANCE = re.compile(r"^(g[0-9]+[a-z]*|p[0-9]+[a-z]*|gr[0-9]+)\.")


def stage_of(props: Props, urn: str) -> str:
    """The stage a resource belongs to: its `aistack.dev/stage` tag, else the stack name."""
    tags = props.get("tags") or {}
    if tags.get(STAGE_TAG):
        return str(tags[STAGE_TAG])
    head = urn.split("::")[0]
    return head.removeprefix("urn:pulumi:").split("/")[-1] if head.startswith("urn:pulumi:") else ""


def _policy_document(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    return value if isinstance(value, dict) else {}


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _is_everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        aws = principal.get("AWS")
        return aws == "*" or (isinstance(aws, list) and "*" in aws)
    return False


def check_no_public_bucket(resource_type: str, props: Props, urn: str) -> list[str]:
    """No S3 bucket may be readable or writable by everyone."""
    if resource_type == PUBLIC_ACCESS_BLOCK:
        off = [k for k in ("blockPublicAcls", "blockPublicPolicy",
                           "ignorePublicAcls", "restrictPublicBuckets") if props.get(k) is not True]
        return [f"public access block must set {', '.join(off)} to true"] if off else []
    if resource_type in (BUCKET, BUCKET_V2, *BUCKET_ACL_TYPES):
        acl = props.get("acl")
        problems = [f"bucket ACL {acl!r} is public"] if acl in PUBLIC_ACLS else []
        if props.get("policy"):
            problems += _public_statements(props["policy"])
        return problems
    if resource_type == BUCKET_POLICY:
        return _public_statements(props.get("policy"))
    return []


def _public_statements(policy: Any) -> list[str]:
    return [
        f"bucket policy statement {s.get('Sid', '?')!r} allows everyone ({s.get('Action')})"
        for s in _statements(_policy_document(policy))
        if s.get("Effect") == "Allow" and _is_everyone(s.get("Principal")) and not s.get("Condition")
    ]


def check_bucket_tls_only(resource_type: str, props: Props, urn: str) -> list[str]:
    """A bucket policy must deny requests that are not over TLS."""
    if resource_type != BUCKET_POLICY:
        return []
    for s in _statements(_policy_document(props.get("policy"))):
        cond = (s.get("Condition") or {}).get("Bool") or {}
        if s.get("Effect") == "Deny" and _is_everyone(
                s.get("Principal")) and str(cond.get("aws:SecureTransport")).lower() == "false":
            return []
    return ["bucket policy must deny requests with aws:SecureTransport = false"]


def check_bucket_encrypted_with_kms(resource_type: str, props: Props, urn: str) -> list[str]:
    """Default bucket encryption must be SSE-KMS."""
    if resource_type not in BUCKET_SSE_TYPES:
        return []
    algorithms = [((r or {}).get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
                  for r in props.get("rules") or []]
    if not algorithms or any(a not in ("aws:kms", "aws:kms:dsse") for a in algorithms):
        return [f"default encryption must be aws:kms, got {algorithms}"]
    return []


def check_rds_encrypted_private(resource_type: str, props: Props, urn: str) -> list[str]:
    """Databases are encrypted at rest and never reachable from the internet."""
    if resource_type not in (RDS_INSTANCE, RDS_CLUSTER):
        return []
    problems = []
    if props.get("storageEncrypted") is not True:
        problems.append("storageEncrypted must be true")
    if props.get("publiclyAccessible") is True:
        problems.append("publiclyAccessible must be false")
    return problems


def _is_gpu_node_group(props: Props) -> bool:
    ami = str(props.get("amiType") or "")
    return "NVIDIA" in ami or "GPU" in ami or any(GPU_INSTANCE.match(t) for t in props.get("instanceTypes")
                                                  or [])


def check_gpu_node_groups_tainted(resource_type: str, props: Props, urn: str) -> list[str]:
    """GPU nodes are tainted `nvidia.com/gpu:NoSchedule` and labelled with their GPU type, so
    only the operator's vLLM pods (which select and tolerate exactly that) land on them."""
    if resource_type != NODE_GROUP or not _is_gpu_node_group(props):
        return []
    problems = []
    taints = props.get("taints") or []
    if not any(t.get("key") == GPU_TAINT_KEY and t.get("effect") == "NO_SCHEDULE" for t in taints):
        problems.append(f"GPU node group must carry the taint {GPU_TAINT_KEY}:NoSchedule")
    if not (props.get("labels") or {}).get(GPU_TYPE_LABEL):
        problems.append(f"GPU node group must carry the label {GPU_TYPE_LABEL}")
    return problems


def check_eks_secrets_encryption(resource_type: str, props: Props, urn: str) -> list[str]:
    """Kubernetes Secrets are envelope-encrypted with a KMS key."""
    if resource_type != EKS_CLUSTER:
        return []
    enc = props.get("encryptionConfig") or {}
    if "secrets" not in (enc.get("resources") or []) or not (enc.get("provider") or {}).get("keyArn"):
        return ["encryptionConfig must encrypt 'secrets' with a KMS key"]
    return []


def _ports(rule: Props) -> set[int] | None:
    low, high = rule.get("fromPort"), rule.get("toPort")
    if low is None or high is None or rule.get("protocol") in ("-1", "all") or high - low > 1024:
        return None
    return set(range(int(low), int(high) + 1))


def _load_balancer_exception(props: Props, rule: Props) -> bool:
    key, value = LOAD_BALANCER_ROLE
    ports = _ports(rule)
    return (props.get("tags") or {}).get(key) == value and ports is not None and ports <= LOAD_BALANCER_PORTS


def check_no_open_ingress(resource_type: str, props: Props, urn: str) -> list[str]:
    """Nothing accepts traffic from the whole internet, except a load balancer's security group
    (tagged `aistack.dev/role: load-balancer`) on 80/443."""
    rules: list[Props] = []
    if resource_type == SECURITY_GROUP:
        rules = list(props.get("ingress") or [])
    elif resource_type == SECURITY_GROUP_RULE and props.get("type") == "ingress":
        rules = [props]
    elif resource_type == INGRESS_RULE:
        rules = [{**props, "cidrBlocks": [props.get("cidrIpv4")], "ipv6CidrBlocks": [props.get("cidrIpv6")],
                  "protocol": props.get("ipProtocol")}]
    problems = []
    for rule in rules:
        cidrs = set(rule.get("cidrBlocks") or []) | set(rule.get("ipv6CidrBlocks") or [])
        if cidrs & OPEN_CIDRS and not _load_balancer_exception(props, rule):
            problems.append(
                f"ingress {rule.get('protocol')} {rule.get('fromPort')}-{rule.get('toPort')} is open to "
                f"{sorted(cidrs & OPEN_CIDRS)}")
    return problems


def check_prod_deletion_protection(resource_type: str, props: Props, urn: str) -> list[str]:
    """In prod the database and the cluster cannot be deleted by one mistaken `pulumi up`, and
    the database survives an AZ outage."""
    if stage_of(props, urn) != "prod":
        return []
    if resource_type in (RDS_INSTANCE, RDS_CLUSTER):
        problems = []
        if props.get("deletionProtection") is not True:
            problems.append("deletionProtection must be true in prod")
        if resource_type == RDS_INSTANCE and props.get("multiAz") is not True:
            problems.append("multiAz must be true in prod")
        return problems
    if resource_type == EKS_CLUSTER and props.get("deletionProtection") is not True:
        return ["deletionProtection must be true in prod"]
    return []


CHECKS: dict[str, tuple[str, Check]] = {
    "s3-no-public-bucket": ("S3 buckets are never public.", check_no_public_bucket),
    "s3-tls-only": ("S3 bucket policies deny non-TLS requests.", check_bucket_tls_only),
    "s3-sse-kms": ("S3 default encryption is SSE-KMS.", check_bucket_encrypted_with_kms),
    "rds-encrypted-private": ("RDS is encrypted and not publicly accessible.", check_rds_encrypted_private),
    "gpu-node-groups-tainted": ("GPU node groups are tainted and labelled.", check_gpu_node_groups_tainted),
    "eks-secrets-encryption": ("EKS encrypts Secrets with KMS.", check_eks_secrets_encryption),
    "no-open-ingress": ("No 0.0.0.0/0 ingress except a load balancer on 80/443.", check_no_open_ingress),
    "prod-deletion-protection": ("Deletion protection (and multi-AZ RDS) in prod.",
                                 check_prod_deletion_protection),
}


def violations(resource_type: str, props: Props, urn: str) -> dict[str, list[str]]:
    """Every check's messages for one resource (only the checks that found something)."""
    found = {name: check(resource_type, props, urn) for name, (_, check) in CHECKS.items()}
    return {name: msgs for name, msgs in found.items() if msgs}


def build_policies() -> list[Any]:
    """The checks as mandatory pulumi-policy ResourceValidationPolicies."""
    from pulumi_policy import EnforcementLevel, ResourceValidationPolicy

    def wrap(check: Check) -> Callable[..., None]:
        def validate(args: Any, report_violation: Callable[..., None]) -> None:
            for message in check(args.resource_type, args.props, args.urn):
                report_violation(message, None)

        return validate

    return [
        ResourceValidationPolicy(name=name, description=description, validate=wrap(check),
                                 enforcement_level=EnforcementLevel.MANDATORY)
        for name, (description, check) in CHECKS.items()
    ]
