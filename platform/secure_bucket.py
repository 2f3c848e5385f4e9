"""`SecureBucket`: an S3 bucket that cannot be made public, read over plain HTTP or lose data.

Versioning keeps overwritten documents and artifacts recoverable; a lifecycle rule expires old
versions so that safety does not grow the bill forever. Objects are encrypted with the stores'
KMS key (bucket keys on, to keep KMS request costs down).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws.s3 as s3


@dataclass(frozen=True, kw_only=True)
class SecureBucketArgs:
    kms_key_arn: pulumi.Input[str]
    noncurrent_version_days: int
    tags: dict[str, str]
    force_destroy: bool = False
    """Only for throwaway stages: lets `pulumi destroy` delete a bucket that still has objects."""


def tls_only_policy(bucket_arn: str) -> str:
    """Deny every request that is not over TLS, for the bucket and its objects."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


class SecureBucket(pulumi.ComponentResource):
    """Bucket + ownership, public access block, SSE-KMS, versioning, lifecycle, TLS-only policy."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]

    def __init__(self, name: str, args: SecureBucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aistack:platform:SecureBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        bucket = s3.Bucket(name, bucket_prefix=f"{name}-", force_destroy=args.force_destroy, tags=args.tags,
                           opts=child)
        s3.BucketOwnershipControls(name, bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"},
                                   opts=child)
        public_block = s3.BucketPublicAccessBlock(
            name,
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        s3.BucketServerSideEncryptionConfiguration(
            name,
            bucket=bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms",
                                                                "kms_master_key_id": args.kms_key_arn},
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        versioning = s3.BucketVersioning(name, bucket=bucket.id,
                                         versioning_configuration={"status": "Enabled"}, opts=child)
        s3.BucketLifecycleConfiguration(
            name,
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-old-versions",
                    "status": "Enabled",
                    "filter": {},
                    "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_version_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
                }
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        # After the public access block, so the policy can never be the one that opens it.
        s3.BucketPolicy(
            name,
            bucket=bucket.id,
            policy=bucket.arn.apply(tls_only_policy),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_block]),
        )

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.register_outputs({"bucketName": self.bucket_name, "bucketArn": self.bucket_arn})
