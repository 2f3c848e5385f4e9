"""`GpuCluster`: an EKS cluster whose GPU nodes are ready for the operator's vLLM pods.

Built from raw `pulumi_aws` resources (not the `pulumi_eks` component) so every piece is
visible to `pulumi preview`, to the policy pack and to the mocked tests. GPU node groups carry
the label and taint from `aistack.platform.gpu_nodes`, which is what the operator's vLLM
Deployments select and tolerate; nothing else is scheduled onto them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_aws.cloudwatch as cloudwatch
import pulumi_aws.eks as eks
import pulumi_aws.iam as iam
import pulumi_aws.kms as kms
import pulumi_kubernetes as k8s

from aistack.platform.cluster_addons import ClusterAddons, ClusterAddonsArgs
from aistack.platform.config import GpuNodeGroupConfig, NodeGroupConfig
from aistack.platform.gpu_nodes import gpu_node_labels, gpu_node_taint
from aistack.platform.iam_documents import AWS_POLICY, service_trust
from aistack.platform.kubeconfig import kubeconfig_json
from aistack.platform.network import Network, NetworkArgs
from aistack.platform.tags import resource_tags

SYSTEM_NODE_LABELS = {"aistack.dev/node-role": "system"}
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")


@dataclass(frozen=True, kw_only=True)
class GpuClusterArgs:
    """The cluster's shape; `aistack.platform.config.ClusterConfig` fills it from stack config."""

    stage: str
    region: str
    cidr: str
    availability_zones: list[str]
    nat_gateways: Literal["single", "perAz"]
    kubernetes_version: str
    endpoint_public_access: bool
    public_access_cidrs: list[str]
    log_types: list[str]
    log_retention_days: int
    system_nodes: NodeGroupConfig
    gpu_node_groups: list[GpuNodeGroupConfig]
    device_plugin_version: str
    deletion_protection: bool = False
    tags: dict[str, str] = field(default_factory=dict)


def eks_taint(taint: dict[str, str]) -> dict[str, str]:
    """Kubernetes taint (`effect: NoSchedule`) -> the EKS API form (`effect: NO_SCHEDULE`)."""
    effect = re.sub(r"(?<!^)(?=[A-Z])", "_", taint["effect"]).upper()
    return {"key": taint["key"], "value": taint["value"], "effect": effect}


def _field(value: Any, name: str) -> Any:
    """A field of a nested provider output, whether it arrives typed or as a plain dict
    (keyed by the snake_case or the camelCase wire name)."""
    if isinstance(value, dict):
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)
        for key in (name, camel):
            if key in value:
                return value[key]
    return getattr(value, name)


class GpuCluster(pulumi.ComponentResource):
    """VPC + EKS (KMS-encrypted secrets, logs, OIDC for IRSA) + system and GPU node groups +
    add-ons, and a Kubernetes provider for everything installed into it."""

    cluster_name: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(self, name: str, args: GpuClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aistack:platform:GpuCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {**resource_tags(stage=args.stage), **args.tags}

        self.network = Network(
            name,
            NetworkArgs(
                stage=args.stage,
                cluster_name=name,
                cidr=args.cidr,
                availability_zones=args.availability_zones,
                nat_gateways=args.nat_gateways,
            ),
            opts=child,
        )

        secrets_key = kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes secrets in EKS cluster {name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=tags,
            opts=child,
        )
        cluster_role = iam.Role(f"{name}-cluster", assume_role_policy=service_trust("eks.amazonaws.com"),
                                tags=tags, opts=child)
        cluster_policy = iam.RolePolicyAttachment(
            f"{name}-cluster-policy", role=cluster_role.name,
            policy_arn=AWS_POLICY + "AmazonEKSClusterPolicy", opts=child
        )

        # Created before the cluster, so EKS writes into it instead of a never-expiring group.
        logs = cloudwatch.LogGroup(
            f"{name}-control-plane",
            name=f"/aws/eks/{name}/cluster",
            retention_in_days=args.log_retention_days,
            tags=tags,
            opts=child,
        )
        vpc_config: dict[str, Any] = {
            "subnet_ids": self.network.private_subnet_ids,
            "endpoint_private_access": True,
            "endpoint_public_access": args.endpoint_public_access,
        }
        if args.endpoint_public_access:
            vpc_config["public_access_cidrs"] = args.public_access_cidrs
        cluster = eks.Cluster(
            f"{name}-eks",
            name=name,
            version=args.kubernetes_version,
            role_arn=cluster_role.arn,
            vpc_config=vpc_config,
            enabled_cluster_log_types=args.log_types,
            encryption_config={"provider": {"key_arn": secrets_key.arn}, "resources": ["secrets"]},
            access_config={
                "authentication_mode": "API_AND_CONFIG_MAP",
                "bootstrap_cluster_creator_admin_permissions": True,
            },
            deletion_protection=args.deletion_protection,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster_policy, logs]),
        )
        issuer = cluster.identities.apply(lambda ids: _field(_field(ids[0], "oidcs")[0], "issuer"))
        oidc = iam.OpenIdConnectProvider(
            f"{name}-oidc", url=issuer, client_id_lists=["sts.amazonaws.com"], tags=tags, opts=child
        )

        node_role = iam.Role(f"{name}-node", assume_role_policy=service_trust("ec2.amazonaws.com"), tags=tags,
                             opts=child)
        node_policies = [
            iam.RolePolicyAttachment(f"{name}-node-{p}", role=node_role.name, policy_arn=AWS_POLICY + p,
                                     opts=child)
            for p in NODE_POLICIES
        ]
        node_opts = pulumi.ResourceOptions(parent=self, depends_on=node_policies)

        def node_group(group_name: str, cfg: NodeGroupConfig, **extra: Any) -> eks.NodeGroup:
            return eks.NodeGroup(
                f"{name}-{group_name}",
                cluster_name=cluster.name,
                node_role_arn=node_role.arn,
                subnet_ids=self.network.private_subnet_ids,
                instance_types=cfg.instance_types,
                capacity_type=cfg.capacity_type,
                disk_size=cfg.disk_size_gb,
                scaling_config={"min_size": cfg.min_size, "max_size": cfg.max_size,
                                "desired_size": cfg.desired_size},
                update_config={"max_unavailable": 1},
                tags=tags,
                opts=node_opts,
                **extra,
            )

        system = node_group("system", args.system_nodes, ami_type="AL2023_x86_64_STANDARD",
                            labels=SYSTEM_NODE_LABELS)
        self.gpu_node_groups = [
            node_group(
                f"gpu-{g.name}",
                g,
                ami_type=g.ami_type,
                labels=gpu_node_labels(g.gpu_type),
                taints=[eks_taint(gpu_node_taint())],
            )
            for g in args.gpu_node_groups
        ]

        self.cluster_name = cluster.name
        self.cluster_security_group_id = cluster.vpc_config.apply(
            lambda c: _field(c, "cluster_security_group_id"))
        self.oidc_provider_arn = oidc.arn
        self.oidc_issuer_url = issuer
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(cluster.name, cluster.endpoint, cluster.certificate_authority).apply(
                lambda v: kubeconfig_json(cluster_name=v[0], endpoint=v[1], ca_data=_field(v[2], "data"),
                                          region=args.region)
            )
        )
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[system]),
        )
        self.addons = ClusterAddons(
            f"{name}-addons",
            ClusterAddonsArgs(
                stage=args.stage,
                cluster_name=cluster.name,
                oidc_provider_arn=oidc.arn,
                oidc_issuer_url=issuer,
                provider=self.provider,
                device_plugin_version=args.device_plugin_version,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[system]),
        )
        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "kubeconfig": self.kubeconfig,
                "clusterSecurityGroupId": self.cluster_security_group_id,
                "oidcProviderArn": self.oidc_provider_arn,
                "vpcId": self.network.vpc_id,
                "privateSubnetIds": self.network.private_subnet_ids,
            }
        )
