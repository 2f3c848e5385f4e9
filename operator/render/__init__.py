"""Pure render functions: an AIStack in, the Kubernetes objects of its layers out.

`render(stack)` is what the operator applies and what `aistack render` prints. It does no
I/O and reads no clock, so the same stack always gives the same objects, in the same order.
Its result also carries what the operator needs to know of those objects (which one is the
gateway, the store, each Job; the endpoint; the Qdrant URL), so that nothing outside render
re-derives a child's name or a URL. Each layer module imports only `common` and `endpoints`;
this module composes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aistack.api.conventions import COMPONENT_GATEWAY
from aistack.api.images import package_version
from aistack.api.v1alpha1 import AIStack
from aistack.operator.render import endpoints, gateway, guardrails, jobs
from aistack.operator.render.canary import render_canary
from aistack.operator.render.common import Manifest, RenderContext, selector_labels
from aistack.operator.render.adapters import with_adapters
from aistack.operator.render.model import pull_container, pull_job, render_model
from aistack.operator.render.retrieval import render_retrieval
from aistack.operator.render.scaling import render_scaling
from aistack.operator.render.tracking import render_tracking

# Kinds in the order a human (and `kubectl apply -f`) wants them: config and storage first.
KIND_ORDER = ("ServiceAccount", "Role", "RoleBinding", "ConfigMap", "PersistentVolumeClaim", "Service",
              "StatefulSet", "Deployment", "HorizontalPodAutoscaler", "ScaledObject", "Lease", "Job")

ChildKey = tuple[str, str]
"""(kind, name) of a child, as `aistack.operator.apply` keys them."""

__all__ = ["KIND_ORDER", "ChildKey", "Manifest", "RenderContext", "Rendered", "render"]


@dataclass(frozen=True, kw_only=True)
class Rendered:
    """A stack's children and what the operator reads about them. Treat as read-only: the
    operator's memo hands the same object to every reconcile of an unchanged stack."""

    stack: AIStack
    manifests: list[Manifest]
    """Every child, sorted by kind then name: what `aistack render` prints."""
    gateway: ChildKey
    model: ChildKey | None
    """The vLLM Deployment; None for an API model."""
    canary: ChildKey | None
    """The vLLM canary's Deployment (`<stack>-model-canary`); None without one."""
    store: ChildKey | None
    """The managed Qdrant's StatefulSet; None without retrieval or with an external store."""
    tracking: ChildKey | None
    """The managed MLflow's Deployment; None without observability or with an external MLflow."""
    ingestion_job: ChildKey | None
    evaluation_job: ChildKey | None
    canary_evaluation_job: ChildKey | None
    """`aistack eval --compare-stable` for a canary with `analysis` (and a ConfigMap dataset): the
    operator creates it once the canary has started, and its outcome gates the canary."""
    load_lease: ChildKey | None
    """The Lease the gateways report the model's load on (the built-in autoscaler's); None without."""
    pull_job: ChildKey | None
    """The model cache's pull Job (prePull on a shared volume): the model's Deployment waits for it."""
    collection_job: ChildKey | None
    """The external Qdrant's collection step (`aistack collection` holding its key); None when the
    operator manages the collection itself (a managed Qdrant, or an external one with no key)."""
    endpoint: str
    """The gateway's in-cluster OpenAI-compatible base URL (`status.endpoint`)."""
    qdrant_url: str | None
    """The managed Qdrant's in-cluster URL; None as for `store`."""
    gateway_selector: dict[str, str]
    """The labels that select the gateway pods (`status.selector`, for `kubectl scale`)."""
    local_only_sources: tuple[str, ...]
    """Retrieval sources the cluster cannot read (paths without a volume): left to `aistack ingest`."""

    def without(self, *keys: ChildKey) -> list[Manifest]:
        """The manifests less some children (an evaluation Job, until the gateway serves this render)."""
        return [m for m in self.manifests if (m["kind"], m["metadata"]["name"]) not in keys]

    def manifest(self, key: ChildKey) -> Manifest:
        """The child `key`; KeyError when the render has none (as for an API model's Deployment)."""
        for m in self.manifests:
            if (m["kind"], m["metadata"]["name"]) == key:
                return m
        raise KeyError(key)


def render(stack: AIStack, *, version: str | None = None, canary_weight: int | None = None) -> Rendered:
    """Every child object of `stack`, sorted by kind then name, and the keys and URLs the
    operator reads (`version` picks the default images; the package's own by default;
    `canary_weight` is the canary's weight in force, the spec's when None)."""
    ctx = RenderContext(stack=stack, version=version or package_version(), canary_weight=canary_weight)
    sidecar = guardrails.sidecar(ctx, gateway_volume=gateway.CONFIG_VOLUME,
                                 gateway_mount=gateway.CONFIG_DIR) \
        if guardrails.needs_sidecar(ctx) else None
    ingestion, evaluation = jobs.ingestion_job(ctx), jobs.evaluation_job(ctx)
    canary_evaluation = jobs.canary_evaluation_job(ctx)
    pull = pull_job(ctx)
    collection = jobs.collection_job(ctx)
    runs = [job for job in (ingestion, evaluation, canary_evaluation, collection) if job is not None]
    manifests = [
        *with_adapters(ctx, render_model(ctx)), *render_canary(ctx, model=render_model, pull=pull_container),
        *render_scaling(ctx), *([pull] if pull else []), *render_retrieval(ctx), *render_tracking(ctx),
        *guardrails.render_guardrails(ctx),
        *gateway.render_gateway(ctx, sidecar=sidecar),
        *([jobs.manifest_config_map(ctx), *runs] if runs else []),  # the ConfigMap the Jobs read
    ]
    manifests.sort(key=lambda m: (KIND_ORDER.index(m["kind"]), m["metadata"]["name"]))
    return Rendered(
        stack=stack, manifests=manifests,
        gateway=("Deployment", endpoints.gateway_name(ctx)),
        model=_key("Deployment", endpoints.model_name(ctx)),
        canary=_key("Deployment", endpoints.canary_name(ctx)),
        store=_key("StatefulSet", endpoints.store_name(ctx)),
        tracking=_key("Deployment", endpoints.tracking_name(ctx)),
        ingestion_job=_key("Job", ingestion["metadata"]["name"] if ingestion else None),
        collection_job=_key("Job", collection["metadata"]["name"] if collection else None),
        evaluation_job=_key("Job", evaluation["metadata"]["name"] if evaluation else None),
        canary_evaluation_job=_key("Job", canary_evaluation["metadata"]["name"] if canary_evaluation
                                   else None),
        pull_job=_key("Job", pull["metadata"]["name"] if pull else None),
        load_lease=_key("Lease", endpoints.model_load_lease(ctx)),
        endpoint=endpoints.gateway_endpoint(ctx),
        qdrant_url=endpoints.qdrant_url(ctx),
        gateway_selector=selector_labels(stack, COMPONENT_GATEWAY),
        local_only_sources=tuple(jobs.local_only_sources(stack)),
    )


def _key(kind: str, name: str | None) -> ChildKey | None:
    return None if name is None else (kind, name)
