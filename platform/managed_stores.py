"""`ManagedStores`: the durable state behind retrieval and MLflow, outside the cluster.

Documents and MLflow artifacts live in S3 (`SecureBucket`), MLflow's backend store in RDS
PostgreSQL reachable only from the cluster's nodes. Pods get bucket access through IRSA roles
scoped to one bucket each, so neither the gateway nor MLflow ever holds an AWS key.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pulumi
import pulumi_aws.ec2 as ec2
import pulumi_aws.iam as iam
import pulumi_aws.kms as kms
import pulumi_aws.rds as rds
import pulumi_random as random

from aistack.platform.config import DatabaseConfig
from aistack.platform.iam_documents import bucket_access, irsa_trust
from aistack.platform.secure_bucket import SecureBucket, SecureBucketArgs
from aistack.platform.tags import resource_tags

POSTGRES_PORT = 5432
MLFLOW_DB = "mlflow"
MLFLOW_DB_USER = "mlflow"


@dataclass(frozen=True, kw_only=True)
class ManagedStoresArgs:
    stage: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list[str]]
    node_security_group_id: pulumi.Input[str]
    """The EKS cluster security group that managed nodes carry: the only allowed DB client."""
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    database: DatabaseConfig
    noncurrent_version_days: int
    workload_namespace: str
    gateway_service_account: str
    mlflow_service_account: str


def backend_store_uri(*, password: str, host: str, port: int) -> str:
    """MLflow's `--backend-store-uri` for the RDS database; TLS required."""
    return (f"postgresql://{MLFLOW_DB_USER}:{quote(password, safe='')}@{host}:{port}/{MLFLOW_DB}"
            "?sslmode=require")


def parameter_group_family(engine_version: str) -> str:
    """`16.4` -> `postgres16`."""
    return f"postgres{engine_version.split('.')[0]}"


class ManagedStores(pulumi.ComponentResource):
    """Documents + artifacts buckets, MLflow's PostgreSQL, and IRSA roles for gateway and MLflow."""

    def __init__(self, name: str, args: ManagedStoresArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aistack:platform:ManagedStores", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = resource_tags(stage=args.stage)
        db_cfg = args.database
        disposable = args.stage == "dev"

        key = kms.Key(
            f"{name}-stores",
            description=f"Encryption of aistack buckets and database ({args.stage})",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=tags,
            opts=child,
        )
        bucket_args = SecureBucketArgs(
            kms_key_arn=key.arn, noncurrent_version_days=args.noncurrent_version_days, tags=tags,
            force_destroy=disposable
        )
        self.documents = SecureBucket(f"{name}-documents", bucket_args, opts=child)
        self.artifacts = SecureBucket(f"{name}-mlflow-artifacts", bucket_args, opts=child)

        subnets = rds.SubnetGroup(f"{name}-db", subnet_ids=args.private_subnet_ids, tags=tags, opts=child)
        db_sg = ec2.SecurityGroup(
            f"{name}-db",
            description="MLflow PostgreSQL: reachable from the EKS nodes only",
            vpc_id=args.vpc_id,
            ingress=[
                {
                    "description": "PostgreSQL from the cluster's nodes",
                    "protocol": "tcp",
                    "from_port": POSTGRES_PORT,
                    "to_port": POSTGRES_PORT,
                    "security_groups": [args.node_security_group_id],
                }
            ],
            egress=[],
            tags=tags,
            opts=child,
        )
        params = rds.ParameterGroup(
            f"{name}-db",
            family=parameter_group_family(db_cfg.engine_version),
            description="aistack MLflow: TLS only",
            parameters=[{"name": "rds.force_ssl", "value": "1", "apply_method": "immediate"}],
            tags=tags,
            opts=child,
        )
        password = random.RandomPassword(f"{name}-db", length=40, special=False, opts=child)
        secret_password: pulumi.Output[str] = pulumi.Output.secret(password.result)
        self.database = rds.Instance(
            f"{name}-mlflow",
            engine="postgres",
            engine_version=db_cfg.engine_version,
            instance_class=db_cfg.instance_class,
            allocated_storage=db_cfg.allocated_storage_gb,
            max_allocated_storage=db_cfg.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=key.arn,
            db_name=MLFLOW_DB,
            username=MLFLOW_DB_USER,
            password=secret_password,
            port=POSTGRES_PORT,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[db_sg.id],
            parameter_group_name=params.name,
            publicly_accessible=False,
            multi_az=db_cfg.multi_az,
            deletion_protection=db_cfg.deletion_protection,
            backup_retention_period=db_cfg.backup_retention_days,
            copy_tags_to_snapshot=True,
            skip_final_snapshot=not db_cfg.deletion_protection,
            final_snapshot_identifier=None if not db_cfg.deletion_protection else f"{name}-mlflow-final",
            auto_minor_version_upgrade=True,
            tags=tags,
            opts=child,
        )

        self.gateway_role = self._irsa_role(
            f"{name}-gateway", args, args.gateway_service_account, self.documents, key, write=False, tags=tags
        )
        self.mlflow_role = self._irsa_role(
            f"{name}-mlflow", args, args.mlflow_service_account, self.artifacts, key, write=True, tags=tags
        )

        self.documents_bucket = self.documents.bucket_name
        self.artifacts_bucket = self.artifacts.bucket_name
        self.artifact_uri = self.artifacts.bucket_name.apply(lambda b: f"s3://{b}/mlflow")
        self.database_endpoint = self.database.endpoint
        self.backend_store_uri: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(secret_password, self.database.address, self.database.port).apply(
                lambda v: backend_store_uri(password=v[0], host=v[1], port=int(v[2]))
            )
        )
        self.register_outputs(
            {
                "documentsBucket": self.documents_bucket,
                "artifactsBucket": self.artifacts_bucket,
                "artifactUri": self.artifact_uri,
                "databaseEndpoint": self.database_endpoint,
                "backendStoreUri": self.backend_store_uri,
                "gatewayRoleArn": self.gateway_role.arn,
                "mlflowRoleArn": self.mlflow_role.arn,
            }
        )

    def _irsa_role(
        self,
        name: str,
        args: ManagedStoresArgs,
        service_account: str,
        bucket: SecureBucket,
        key: kms.Key,
        *,
        write: bool,
        tags: dict[str, str],
    ) -> iam.Role:
        """A role only `service_account` pods of the workload namespace can assume, with access
        to one bucket (read-only unless `write`)."""
        role = iam.Role(
            name,
            assume_role_policy=pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer_url).apply(
                lambda v: irsa_trust(
                    oidc_provider_arn=v[0],
                    oidc_issuer_url=v[1],
                    namespace=args.workload_namespace,
                    service_account=service_account,
                )
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        iam.RolePolicy(
            name,
            role=role.id,
            policy=pulumi.Output.all(bucket.bucket_arn, key.arn).apply(
                lambda v: bucket_access(bucket_arn=v[0], kms_key_arn=v[1], write=write)
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return role
