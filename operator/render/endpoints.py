"""Where each layer is reached inside the cluster: its Service name and URL.

The one place layers learn of each other: the gateway's config points at the model, the store
and MLflow; the Jobs at the store, the gateway and MLflow; the operator at the store (the
collection) and the gateway (`status.endpoint`). A name is None when the stack runs no such
Service (a layer left out, an API model, an external store or MLflow): each layer module
renders its workload and Service under this name, or renders nothing.
"""

from __future__ import annotations

from aistack.api.conventions import (
    COMPONENT_GATEWAY,
    COMPONENT_MODEL,
    COMPONENT_MODEL_CANARY,
    COMPONENT_VECTOR_STORE,
    GATEWAY_PORT,
    MLFLOW_PORT,
    QDRANT_HTTP_PORT,
    VLLM_PORT,
    service_url,
)
from aistack.api.model_load import LOAD_COMPONENT
from aistack.operator.render.common import RenderContext

TRACKING_SUFFIX = "mlflow"


def gateway_name(ctx: RenderContext) -> str:
    return ctx.name(COMPONENT_GATEWAY)


def model_name(ctx: RenderContext) -> str | None:
    """The vLLM Service; None for an OpenAI-compatible API model."""
    return ctx.name(COMPONENT_MODEL) if ctx.stack.spec.model.provider == "vllm" else None


def store_name(ctx: RenderContext) -> str | None:
    """The managed Qdrant's Service; None when retrieval is off or the store is external."""
    retrieval = ctx.stack.spec.retrieval
    if retrieval is None or retrieval.vector_store.managed is None:
        return None
    return ctx.name(COMPONENT_VECTOR_STORE)


def tracking_name(ctx: RenderContext) -> str | None:
    """The managed MLflow's Service; None when observability is off or MLflow is external."""
    observability = ctx.stack.spec.observability
    if observability is None or observability.mlflow.managed is None:
        return None
    return ctx.name(TRACKING_SUFFIX)


def gateway_endpoint(ctx: RenderContext) -> str:
    """The stack's OpenAI-compatible base URL inside the cluster (`status.endpoint`)."""
    return _url(ctx, gateway_name(ctx), GATEWAY_PORT, path="/v1")


def model_replicas_name(ctx: RenderContext) -> str | None:
    """The headless Service whose DNS records are the model's ready pods (the gateway's routing)."""
    name = model_name(ctx)
    return None if name is None else f"{name}-replicas"


def model_replicas_dns(ctx: RenderContext) -> str | None:
    name = model_replicas_name(ctx)
    return None if name is None else f"{name}.{ctx.stack.namespace}.svc.cluster.local"


def model_base_url(ctx: RenderContext) -> str | None:
    """Where the gateway (and the guardrails sidecar) reach a self-hosted model."""
    name = model_name(ctx)
    return None if name is None else _url(ctx, name, VLLM_PORT, path="/v1")


def qdrant_url(ctx: RenderContext) -> str | None:
    """URL of the managed Qdrant."""
    name = store_name(ctx)
    return None if name is None else _url(ctx, name, QDRANT_HTTP_PORT)


def tracking_uri(ctx: RenderContext) -> str | None:
    """URL of the managed MLflow."""
    name = tracking_name(ctx)
    return None if name is None else _url(ctx, name, MLFLOW_PORT)


def _url(ctx: RenderContext, name: str, port: int, *, path: str = "") -> str:
    return service_url(name=name, namespace=ctx.stack.namespace, port=port, path=path)


def model_load_lease(ctx: RenderContext) -> str | None:
    """The Lease the gateways report the model's load on (`aistack.api.model_load`), for the
    operator's built-in autoscaler, and their canary windows (`aistack.api.canary_report`), for its
    canary analysis; None without either (no autoscaling or KEDA's, and no analysed canary)."""
    model = ctx.stack.spec.model
    vllm = model.vllm
    autoscaled = model_name(ctx) is not None and vllm is not None and vllm.autoscaling is not None and \
        vllm.autoscaling.engine == "builtin"
    analysed = model.canary is not None and model.canary.analysis is not None
    return ctx.name(LOAD_COMPONENT) if autoscaled or analysed else None


def canary_name(ctx: RenderContext) -> str | None:
    """The vLLM canary's Deployment and Service (`<stack>-model-canary`); None without one: no
    canary, an adapter canary (served by the stable pods) or an API model's."""
    canary = ctx.stack.spec.model.canary
    if model_name(ctx) is None or canary is None or canary.adapter is not None:
        return None
    return ctx.name(COMPONENT_MODEL_CANARY)


def canary_replicas_name(ctx: RenderContext) -> str | None:
    name = canary_name(ctx)
    return None if name is None else f"{name}-replicas"


def canary_base_url(ctx: RenderContext) -> str | None:
    name = canary_name(ctx)
    return None if name is None else _url(ctx, name, VLLM_PORT, path="/v1")


def canary_replicas_dns(ctx: RenderContext) -> str | None:
    name = canary_replicas_name(ctx)
    return None if name is None else f"{name}.{ctx.stack.namespace}.svc.cluster.local"


def gateway_account(ctx: RenderContext) -> str | None:
    """The gateway pods' service account: the spec's, else, where they report the model's load,
    one of the stack's own (`<stack>-gateway`, so the right to write the Lease is no other pod's);
    None: the namespace's `default`."""
    named = ctx.stack.spec.gateway.service_account_name
    if named or model_load_lease(ctx) is None:
        return named
    return gateway_name(ctx)
