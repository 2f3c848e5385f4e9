"""`AIStackOperator`: the AIStack CRD, the operator and what a first stack needs in the cluster.

Built from pulumi_kubernetes resources of its own (not a kustomize directory) so that every
object is declared, diffed and policy-checked like the rest of the platform. The CRD is the
generated file in `crds/`, applied verbatim. The MLflow backend URI (with the database
password) goes into a Secret in the workloads' namespace, where an AIStack references it as
`observability.mlflow.managed.backendStoreSecretRef: {name: mlflow-backend, key: uri}`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from aistack.api.conventions import (
    COMPONENT_GATEWAY,
    GATEWAY_PORT,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_PART_OF,
    PART_OF,
    child_name,
    service_url,
)
from aistack.api import images
from aistack.api.v1alpha1 import AIStack
from aistack.platform.gpu_cluster import SYSTEM_NODE_LABELS
from aistack.platform.operator_manifests import (
    operator_deployment,
    operator_labels,
    operator_namespace,
    operator_rbac,
    peering_object,
)
from aistack.platform.operator_rbac import kopf_peering_crd

MLFLOW_BACKEND_SECRET = "mlflow-backend"
MLFLOW_BACKEND_KEY = "uri"
IRSA_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"


def operator_image(*, image: str | None = None, tag: str | None = None) -> str:
    """`image` if given, else `ghcr.io/aistack-dev/operator:<tag or package version>`."""
    if image:
        return image
    return images.operator_image(version=tag)


def gateway_url(*, stack_name: str, namespace: str) -> str:
    """In-cluster URL of a stack's gateway Service, named as the operator names it."""
    return service_url(name=child_name(stack_name, COMPONENT_GATEWAY), namespace=namespace, port=GATEWAY_PORT)


@dataclass(frozen=True, kw_only=True)
class AIStackOperatorArgs:
    provider: k8s.Provider
    crd: dict[str, Any]
    """The generated CRD document (`crds/aistack.dev_aistacks.yaml`), applied as is."""
    image: str
    namespace: str
    workload_namespace: str
    """Where AIStacks run; receives the MLflow backend Secret."""
    backend_store_uri: pulumi.Input[str]
    replicas: int = 1
    args: list[str] = field(default_factory=list)
    stack: AIStack | None = None
    """An AIStack to create once the operator runs (e.g. from `operator.stackFile`)."""
    workload_accounts: dict[str, WorkloadAccount] = field(default_factory=dict)
    """ServiceAccounts to create in the workload namespace, by component (`gateway`,
    `tracking`), each bound to a cloud role (IRSA); the AIStack from `stack` runs its pods as
    them unless its manifest names accounts of its own."""


@dataclass(frozen=True)
class WorkloadAccount:
    name: str
    role_arn: pulumi.Input[str]


def workload_account_name(glob: str) -> str:
    """The ServiceAccount to create for an IRSA trust pattern (`*-gateway` -> `aistack-gateway`)."""
    return glob.replace("*", PART_OF)


def with_accounts(spec: dict[str, Any], accounts: dict[str, str]) -> dict[str, Any]:
    """`spec` (wire form) with the workload accounts filled in where it names none: the gateway's
    (it also runs the ingestion Job) and managed MLflow's."""
    out = copy.deepcopy(spec)
    if "gateway" in accounts:
        out.setdefault("gateway", {}).setdefault("serviceAccountName", accounts["gateway"])
    managed = ((out.get("observability") or {}).get("mlflow") or {}).get("managed")
    if "tracking" in accounts and managed is not None:
        managed.setdefault("serviceAccountName", accounts["tracking"])
    return out


def _labels() -> dict[str, str]:
    return operator_labels(managed_by="pulumi")


class AIStackOperator(pulumi.ComponentResource):
    """CRD + namespace + RBAC + operator Deployment + MLflow backend Secret (+ an AIStack)."""

    def __init__(self, name: str, args: AIStackOperatorArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aistack:platform:AIStackOperator", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)

        def after(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=list(deps))

        self.crd = k8s.apiextensions.v1.CustomResourceDefinition(
            f"{name}-crd", metadata=args.crd["metadata"], spec=args.crd["spec"], opts=k8s_opts
        )
        peering = kopf_peering_crd()
        peering_crd = k8s.apiextensions.v1.CustomResourceDefinition(
            f"{name}-kopf-peering-crd", metadata=peering["metadata"], spec=peering["spec"], opts=k8s_opts
        )
        peering = peering_object()
        peering_obj = k8s.apiextensions.CustomResource(
            f"{name}-kopf-peering",
            api_version=peering["apiVersion"],
            kind=peering["kind"],
            metadata=peering["metadata"],
            opts=after(peering_crd),
        )
        ns = k8s.core.v1.Namespace(
            f"{name}-ns", metadata=operator_namespace(args.namespace, labels=_labels())["metadata"],
            opts=k8s_opts
        )
        workloads = k8s.core.v1.Namespace(
            f"{name}-workloads",
            metadata={
                "name": args.workload_namespace,
                # vLLM images run as root; restricted is only warned about here.
                "labels": {
                    LABEL_PART_OF: PART_OF,
                    "pod-security.kubernetes.io/enforce": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
            opts=k8s_opts,
        )
        account, role_doc, binding_doc, election_doc, election_binding_doc = operator_rbac(
            args.namespace, labels=_labels())
        sa = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=account["metadata"], opts=after(ns))
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-role", metadata=role_doc["metadata"], rules=role_doc["rules"], opts=k8s_opts
        )
        binding = k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-binding",
            metadata=binding_doc["metadata"],
            role_ref=binding_doc["roleRef"],
            subjects=binding_doc["subjects"],
            opts=after(role, sa),
        )
        election_role = k8s.rbac.v1.Role(
            f"{name}-leader-election-role",
            metadata=election_doc["metadata"],
            rules=election_doc["rules"],
            opts=after(ns),
        )
        election_binding = k8s.rbac.v1.RoleBinding(
            f"{name}-leader-election-binding",
            metadata=election_binding_doc["metadata"],
            role_ref=election_binding_doc["roleRef"],
            subjects=election_binding_doc["subjects"],
            opts=after(election_role, sa),
        )
        deployment = operator_deployment(namespace=args.namespace, image=args.image, replicas=args.replicas,
                                         args=args.args, labels=_labels(), node_selector=SYSTEM_NODE_LABELS)
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=deployment["metadata"],
            spec=deployment["spec"],
            opts=after(self.crd, binding, election_binding, peering_obj),
        )
        self.backend_secret = k8s.core.v1.Secret(
            f"{name}-mlflow-backend",
            metadata={
                "name": MLFLOW_BACKEND_SECRET,
                "namespace": args.workload_namespace,
                "labels": {LABEL_PART_OF: PART_OF, LABEL_MANAGED_BY: "pulumi"},
            },
            type="Opaque",
            string_data={MLFLOW_BACKEND_KEY: pulumi.Output.secret(args.backend_store_uri)},
            opts=after(workloads),
        )

        accounts = [
            k8s.core.v1.ServiceAccount(
                f"{name}-account-{component}",
                metadata={"name": account.name, "namespace": args.workload_namespace,
                          "labels": {LABEL_PART_OF: PART_OF, LABEL_MANAGED_BY: "pulumi",
                                     LABEL_COMPONENT: component},
                          "annotations": {IRSA_ROLE_ANNOTATION: account.role_arn}},
                # the pods use it for their cloud role only (its token is projected by EKS's
                # webhook), never for the Kubernetes API
                automount_service_account_token=False,
                opts=after(workloads),
            )
            for component, account in sorted(args.workload_accounts.items())
        ]

        self.gateway_url: pulumi.Output[str] | None = None
        if args.stack is not None:
            stack_ns = args.stack.metadata.namespace or args.workload_namespace
            metadata: dict[str, Any] = {"name": args.stack.name, "namespace": stack_ns}
            if args.stack.metadata.labels:
                metadata["labels"] = dict(args.stack.metadata.labels)
            self.stack = k8s.apiextensions.CustomResource(
                f"{name}-stack-{args.stack.name}",
                api_version=args.stack.apiVersion,
                kind=args.stack.kind,
                metadata=metadata,
                spec=with_accounts(args.stack.spec.to_wire(),
                                   {c: a.name for c, a in args.workload_accounts.items()}),
                opts=after(self.crd, self.deployment, self.backend_secret, *accounts),
            )
            self.gateway_url = pulumi.Output.from_input(gateway_url(stack_name=args.stack.name,
                                                                    namespace=stack_ns))

        self.namespace = args.namespace
        self.image = args.image
        outputs: dict[str, Any] = {"namespace": args.namespace, "image": args.image}
        if self.gateway_url is not None:
            outputs["gatewayUrl"] = self.gateway_url
        self.register_outputs(outputs)
