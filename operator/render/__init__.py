"""Pure render functions: an AIStack in, the Kubernetes objects of its layers out.

`render(stack)` is what the operator applies and what `aistack render` prints. It does no
I/O and reads no clock, so the same stack always gives the same list, in the same order.
"""

from __future__ import annotations

from aistack.api.images import package_version
from aistack.api.v1alpha1 import AIStack
from aistack.operator.render.common import Manifest, RenderContext
from aistack.operator.render.gateway import render_gateway
from aistack.operator.render.jobs import render_jobs
from aistack.operator.render.model import render_model
from aistack.operator.render.retrieval import render_retrieval
from aistack.operator.render.tracking import render_tracking

# Kinds in the order a human (and `kubectl apply -f`) wants them: config and storage first.
KIND_ORDER = ("ConfigMap", "PersistentVolumeClaim", "Service", "StatefulSet", "Deployment",
              "HorizontalPodAutoscaler", "Job")

__all__ = ["KIND_ORDER", "Manifest", "RenderContext", "render"]


def render(stack: AIStack, *, version: str | None = None, evaluate: bool = True) -> list[Manifest]:
    """Every child object of `stack`, sorted by kind then name.

    `evaluate=False` leaves out the evaluation Job: the reconciler renders it only once the
    gateway serves the current config (render itself cannot see readiness)."""
    ctx = RenderContext(stack=stack, version=version or package_version())
    manifests = [
        *render_model(ctx), *render_retrieval(ctx), *render_tracking(ctx), *render_gateway(ctx),
        *render_jobs(ctx, evaluate=evaluate),
    ]
    return sorted(manifests, key=lambda m: (KIND_ORDER.index(m["kind"]), m["metadata"]["name"]))
