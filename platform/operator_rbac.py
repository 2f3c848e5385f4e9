"""What the aistack operator may do in the cluster, as plain data (the ClusterRole's rules).

Least privilege, rule by rule:
- `aistacks`: watch them, patch finalizers and kopf's progress annotations; `aistacks/status`:
  write conditions; `aistacks/finalizers`: `update`, because children carry owner references
  with `blockOwnerDeletion`, which the OwnerReferencesPermissionEnforcement admission plugin
  allows only to whoever may update the owner's finalizers.
- children of a stack (Deployments, StatefulSets, Services, ConfigMaps, PVCs, HPAs):
  read, create, patch and delete, never `update` (apply is a patch) and nothing else.
  PVC `delete` is needed for `deletionPolicy: Delete`; data is otherwise retained.
- the model's autoscaling (`spec.model.vllm.autoscaling`): `deployments/scale` `patch` (the
  built-in autoscaler sets a model's replicas); as children, the load Lease the gateways write,
  the gateway's ServiceAccount and a Role + RoleBinding granting that account `patch` on that one
  Lease, and KEDA's ScaledObject. Roles and RoleBindings are written, never `bind` or `escalate`:
  the API server lets the operator grant only what it holds itself (`patch` on leases), so the
  most a compromised operator could hand a pod is the right to write a Lease.
- events (core and events.k8s.io): `create`, to report failures on the AIStack.
- kopf itself: `namespaces` and `customresourcedefinitions` list/watch (it discovers and
  follows namespaces and the CRD), `clusterkopfpeerings`/`kopfpeerings` get/list/watch/patch
  (peering: a second operator of higher priority, say a developer's, pauses this one).
- leader election between replicas: `leases` get/create/patch, in a Role of the operator's
  own namespace only (`operator_leader_election_rules`).
- Secrets: nothing. Every secret is only referenced (`secretKeyRef`) and resolved by the
  kubelet into the pods that use it: the key of an *external* Qdrant reaches the gateway, the
  ingestion Job and the collection Job (`aistack collection`, which creates or checks the
  collection there), never the operator; the MLflow backend Secret is created by this Pulumi
  program. (No `secrets`, `pods` or `*` rights and no `bind`/`escalate`, so a compromised operator
  cannot read or enumerate credentials or escalate.)

`deploy/operator/rbac.yaml` (the kustomize install) is generated from these rules
(`operator_manifests.py`), and the operator's e2e RBAC test replays its API calls against it.
"""

from __future__ import annotations

from typing import Any, Literal

AISTACK_GROUP = "aistack.dev"
CHILD_VERBS = ["get", "list", "watch", "create", "patch", "delete"]

CHILD_RESOURCES: dict[str, list[str]] = {
    "apps": ["deployments", "statefulsets"],
    "": ["services", "configmaps", "persistentvolumeclaims", "serviceaccounts"],
    "autoscaling": ["horizontalpodautoscalers"],
    "batch": ["jobs"],
    "coordination.k8s.io": ["leases"],
    "rbac.authorization.k8s.io": ["roles", "rolebindings"],
    "keda.sh": ["scaledobjects"],
}


def operator_cluster_rules() -> list[dict[str, Any]]:
    """PolicyRules of the operator's ClusterRole (camelCase, as in a manifest)."""
    rules: list[dict[str, Any]] = [
        {"apiGroups": [AISTACK_GROUP], "resources": ["aistacks"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": [AISTACK_GROUP], "resources": ["aistacks/status"], "verbs": ["patch"]},
        {"apiGroups": [AISTACK_GROUP], "resources": ["aistacks/finalizers"], "verbs": ["update"]},
    ]
    rules += [{"apiGroups": [group], "resources": resources, "verbs": CHILD_VERBS}
              for group, resources in CHILD_RESOURCES.items()]
    rules += [
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings", "kopfpeerings"],
         "verbs": ["get", "list", "watch", "patch"]},
    ]
    return rules


def operator_leader_election_rules() -> list[dict[str, Any]]:
    """PolicyRules of the Role, in the operator's namespace, for its leader-election Lease."""
    return [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "verbs": ["get", "create", "patch"]}]


def kopf_peering_crd(*, scope: Literal["Cluster", "Namespaced"] = "Cluster") -> dict[str, Any]:
    """kopf's ClusterKopfPeering (or, per namespace, KopfPeering) CRD, as in kopf's docs: where
    operators find peers that outrank them."""
    kind = "ClusterKopfPeering" if scope == "Cluster" else "KopfPeering"
    plural = f"{kind.lower()}s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "scope": scope,
            "group": "kopf.dev",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"status": {"type": "object",
                                                      "x-kubernetes-preserve-unknown-fields": True}},
                        }
                    },
                }
            ],
        },
    }
