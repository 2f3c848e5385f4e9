"""The model's autoscaling (`spec.model.vllm.autoscaling`): what the operator's built-in autoscaler
needs, or a KEDA ScaledObject.

`builtin`: the Lease `<stack>-model-load` that the gateway pods write their load on
(`aistack.api.model_load`; a canary's analysis reads their per-version windows there too,
`aistack.api.canary_report`), and the right to write it: a Role with one verb, `patch`, on that one
Lease, bound to the gateway pods' service account (the stack's own `<stack>-gateway` unless the
spec names one). The operator hears of every write through its watch of the children and sets the
model's replicas itself (`aistack.operator.autoscale`); no gateway is polled.

`keda`: a ScaledObject on the model's Deployment, its bounds from the spec, with a Prometheus
trigger on the gateways' `aistack_gateway_model_demand` (requests in flight to the model or held
for it): `threshold` is the target per replica, `activationThreshold` 0, so one held request
wakes a model at zero, and `cooldownPeriod` is the idle window before zero. KEDA then owns the
count, as the built-in autoscaler would.
"""

from __future__ import annotations

from typing import Any

from aistack.api.conventions import COMPONENT_GATEWAY, COMPONENT_MODEL
from aistack.operator.render.common import Manifest, RenderContext, metadata
from aistack.operator.render.endpoints import (
    gateway_account,
    gateway_name,
    model_load_lease,
    model_name,
)

DEMAND_METRIC = "aistack_gateway_model_demand"
KEDA_POLLING_SECONDS = 15


def render_scaling(ctx: RenderContext) -> list[Manifest]:
    """The ScaledObject (KEDA), and the load Lease with the gateways' right to write it (the built-in
    autoscaler, or a canary's analysis: both read what the gateways write there)."""
    vllm = ctx.stack.spec.model.vllm
    keda = model_name(ctx) is not None and vllm is not None and vllm.autoscaling is not None and \
        vllm.autoscaling.engine == "keda"
    lease = model_load_lease(ctx)
    if lease is None:
        return [scaled_object(ctx)] if keda else []
    account = gateway_account(ctx)
    assert account is not None
    role = ctx.name("gateway-load")
    out: list[Manifest] = [
        *([scaled_object(ctx)] if keda else []),
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
         "metadata": metadata(ctx, name=lease, component=COMPONENT_MODEL), "spec": {}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": metadata(ctx, name=role, component=COMPONENT_GATEWAY),
         "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [lease],
                    "verbs": ["patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": metadata(ctx, name=role, component=COMPONENT_GATEWAY),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ctx.stack.namespace}]},
    ]
    if account == gateway_name(ctx):  # the stack's own account; a named one is the user's
        out.append({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": metadata(ctx, name=account, component=COMPONENT_GATEWAY),
                    "automountServiceAccountToken": False})
    return out


def scaled_object(ctx: RenderContext) -> Manifest:
    vllm = ctx.stack.spec.model.vllm
    name = model_name(ctx)
    assert vllm is not None and vllm.autoscaling is not None and name is not None
    scaling = vllm.autoscaling
    stack = ctx.stack
    query = (f'sum({DEMAND_METRIC}{{stack="{stack.name}",stack_namespace="{stack.namespace}"}}) '
             "or vector(0)")
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicaCount": scaling.min_replicas,
        "maxReplicaCount": scaling.max_replicas,
        "pollingInterval": KEDA_POLLING_SECONDS,
        "cooldownPeriod": scaling.idle_seconds,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
            "scaleDown": {"stabilizationWindowSeconds": scaling.scale_down_delay_seconds}}}},
        "triggers": [{"type": "prometheus", "metadata": {
            "serverAddress": str(scaling.prometheus_url).rstrip("/"),
            "query": query,
            "threshold": str(scaling.target_requests),
            "activationThreshold": "0",
        }}],
    }
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": metadata(ctx, name=name, component=COMPONENT_MODEL), "spec": spec}
