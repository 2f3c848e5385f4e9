"""`ClusterAddons`: what a fresh EKS cluster lacks before vLLM and Qdrant can run on it.

- the NVIDIA device plugin, so GPU nodes advertise `nvidia.com/gpu` (the EKS NVIDIA AMIs ship
  the driver, not the plugin). The chart's default affinity wants Node Feature Discovery
  labels that EKS nodes do not have, so it is replaced by our own GPU node label;
- the EBS CSI driver (with its own IRSA role) and a default encrypted `gp3` StorageClass for
  model caches and Qdrant volumes (the in-tree gp2 class cannot provision gp3).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws.eks as eks
import pulumi_aws.iam as iam
import pulumi_kubernetes as k8s

from aistack.api.conventions import GPU_TAINT_KEY
from aistack.platform.iam_documents import AWS_POLICY, irsa_trust
from aistack.platform.tags import resource_tags

DEVICE_PLUGIN_REPO = "https://nvidia.github.io/k8s-device-plugin"
DEVICE_PLUGIN_NAMESPACE = "nvidia-device-plugin"
ACCELERATOR_LABEL = "aistack.dev/accelerator"
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
DEFAULT_STORAGE_CLASS = "gp3"


@dataclass(frozen=True, kw_only=True)
class ClusterAddonsArgs:
    stage: str
    cluster_name: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    provider: k8s.Provider
    """The cluster's Kubernetes provider; every Kubernetes object goes through it."""
    device_plugin_version: str


def device_plugin_values() -> dict:
    """Helm values: run on GPU nodes only (our label), tolerate the GPU taint."""
    return {
        "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": ACCELERATOR_LABEL, "operator": "In",
                                               "values": ["nvidia"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "system-node-critical",
    }


class ClusterAddons(pulumi.ComponentResource):
    """NVIDIA device plugin, EBS CSI driver, default gp3 StorageClass."""

    def __init__(self, name: str, args: ClusterAddonsArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aistack:platform:ClusterAddons", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        in_cluster = pulumi.ResourceOptions(parent=self, provider=args.provider)
        tags = resource_tags(stage=args.stage)

        ebs_role = iam.Role(
            f"{name}-ebs-csi",
            assume_role_policy=pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer_url).apply(
                lambda v: irsa_trust(
                    oidc_provider_arn=v[0], oidc_issuer_url=v[1], namespace="kube-system",
                    service_account=EBS_CSI_SERVICE_ACCOUNT
                )
            ),
            tags=tags,
            opts=child,
        )
        ebs_policy = iam.RolePolicyAttachment(
            f"{name}-ebs-csi",
            role=ebs_role.name,
            policy_arn=AWS_POLICY + "service-role/AmazonEBSCSIDriverPolicy",
            opts=child,
        )
        self.ebs_csi = eks.Addon(
            f"{name}-ebs-csi",
            cluster_name=args.cluster_name,
            addon_name="aws-ebs-csi-driver",
            service_account_role_arn=ebs_role.arn,
            resolve_conflicts_on_update="OVERWRITE",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ebs_policy]),
        )
        self.storage_class = k8s.storage.v1.StorageClass(
            f"{name}-gp3",
            metadata={
                "name": DEFAULT_STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true", "fsType": "ext4"},
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            reclaim_policy="Delete",
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[self.ebs_csi]),
        )
        self.device_plugin = k8s.helm.v3.Release(
            f"{name}-nvidia-device-plugin",
            name="nvidia-device-plugin",
            chart="nvidia-device-plugin",
            version=args.device_plugin_version,
            repository_opts={"repo": DEVICE_PLUGIN_REPO},
            namespace=DEVICE_PLUGIN_NAMESPACE,
            create_namespace=True,
            values=device_plugin_values(),
            opts=in_cluster,
        )
        self.register_outputs({"storageClass": DEFAULT_STORAGE_CLASS, "ebsCsiRoleArn": ebs_role.arn})
