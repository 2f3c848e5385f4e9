"""IAM policy documents as plain data: trust policies for AWS services and for IRSA.

Pure functions, so tests and the policy pack can read exactly what a role trusts.
"""

from __future__ import annotations

import json
from typing import Any

AWS_POLICY = "arn:aws:iam::aws:policy/"


def service_trust(service: str) -> str:
    """Trust policy letting an AWS service (`eks.amazonaws.com`) assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def irsa_trust(*, oidc_provider_arn: str, oidc_issuer_url: str, namespace: str, service_account: str) -> str:
    """Trust policy for IRSA: only pods of `namespace` running as `service_account` (a glob
    such as `*-gateway` is matched with StringLike) get the role, and only for STS."""
    issuer = oidc_issuer_url.removeprefix("https://")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": oidc_provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {f"{issuer}:aud": "sts.amazonaws.com"},
                        "StringLike": {
                            f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}"},
                    },
                }
            ],
        }
    )


def bucket_access(*, bucket_arn: str, kms_key_arn: str, write: bool) -> str:
    """Object access to one bucket (read, or read/write/delete) and the use of its KMS key."""
    object_actions = ["s3:GetObject"] + (["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
                                         if write else [])
    kms_actions = ["kms:Decrypt"] + (["kms:GenerateDataKey"] if write else [])
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": bucket_arn},
        {"Effect": "Allow", "Action": object_actions, "Resource": f"{bucket_arn}/*"},
        {"Effect": "Allow", "Action": kms_actions, "Resource": kms_key_arn},
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})
