"""Pure render functions: an AIStack in, the Kubernetes objects of its layers out.

`render(stack)` is what the operator applies and what `aistack render` prints. It does no
I/O and reads no clock, so the same stack always gives the same list, in the same order.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from aistack.api.v1alpha1 import AIStack
from aistack.operator.render.common import Manifest, RenderContext
from aistack.operator.render.gateway import render_gateway
from aistack.operator.render.model import render_model
from aistack.operator.render.retrieval import render_retrieval
from aistack.operator.render.tracking import render_tracking

# Kinds in the order a human (and `kubectl apply -f`) wants them: config and storage first.
KIND_ORDER = ("ConfigMap", "PersistentVolumeClaim", "Service", "StatefulSet", "Deployment",
              "HorizontalPodAutoscaler")

__all__ = ["KIND_ORDER", "Manifest", "RenderContext", "operator_version", "render"]


def operator_version() -> str:
    """The installed aistack version: the tag of the default runtime image."""
    try:
        return version("aistack")
    except PackageNotFoundError:  # a source tree without an install
        return "0.0.0"


def render(stack: AIStack, *, version: str | None = None) -> list[Manifest]:
    """Every child object of `stack`, sorted by kind then name."""
    ctx = RenderContext(stack=stack, version=version or operator_version())
    manifests = [
        *render_model(ctx), *render_retrieval(ctx), *render_tracking(ctx), *render_gateway(ctx),
    ]
    return sorted(manifests, key=lambda m: (KIND_ORDER.index(m["kind"]), m["metadata"]["name"]))
