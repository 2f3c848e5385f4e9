"""The vLLM canary (`spec.model.canary` with another name, image or extraArgs): a Deployment of its
own, `<stack>-model-canary`, with a Service and a headless Service like the stable model's, so the
gateway routes the canary's share over its ready pods as it routes the rest over the stable's.

The Deployment is the stable's render (`render_model`) of the canary's model spec
(`canary_model()`), relabelled with its own component (the stable's Services must not select
its pods) and given a volume per pod for its weights: a shared cache holds the stable's pulled
weights, and another model's would need a second pull Job and room the spec did not size. An
adapter canary runs on the stable pods and renders nothing here; so does an API model's.

The operator never scales it to zero on a failed analysis: its pods are kept for inspection, the
gateways only stop sending it requests (weight 0).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from aistack.api.conventions import COMPONENT_MODEL_CANARY, VLLM_PORT
from aistack.api.model_cache import CACHE_PATH
from aistack.api.v1alpha1.canary import canary_model
from aistack.operator.render.common import (
    Manifest,
    RenderContext,
    labels,
    metadata,
    selector_labels,
    service,
)
from aistack.operator.render.endpoints import canary_name, canary_replicas_name


def canary_context(ctx: RenderContext) -> RenderContext:
    """The stack as the canary's Deployment sees it: its model replaced by the canary's."""
    stack = ctx.stack
    spec = stack.spec.model_copy(update={"model": canary_model(stack.spec.model)})
    return RenderContext(stack=stack.model_copy(update={"spec": spec}), version=ctx.version)


def render_canary(ctx: RenderContext, *, model: Callable[[RenderContext], list[Manifest]],
                  pull: Callable[[RenderContext], dict[str, Any]]) -> list[Manifest]:
    """`model` renders a model's objects (`render_model`), `pull` its pull container
    (`pull_container`): the package passes them in, as layer modules import no other layer."""
    name = canary_name(ctx)
    replicas_name = canary_replicas_name(ctx)
    if name is None or replicas_name is None:
        return []
    sub = canary_context(ctx)
    vllm = sub.stack.spec.model.vllm
    assert vllm is not None
    stable = next(m for m in model(sub) if m["kind"] == "Deployment")
    deployment = copy.deepcopy(stable)
    deployment["metadata"] = metadata(ctx, name=name, component=COMPONENT_MODEL_CANARY)
    spec = deployment["spec"]
    spec["replicas"] = vllm.fixed_replicas
    spec["selector"] = {"matchLabels": selector_labels(ctx.stack, COMPONENT_MODEL_CANARY)}
    spec["template"]["metadata"]["labels"] = labels(ctx.stack, COMPONENT_MODEL_CANARY)
    pod: dict[str, Any] = spec["template"]["spec"]
    cache = next(m["name"] for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == CACHE_PATH)
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": vllm.cache.size}}}
    if vllm.cache.storage_class_name:
        claim["storageClassName"] = vllm.cache.storage_class_name
    pod["volumes"] = [{"name": cache, "ephemeral": {"volumeClaimTemplate": {"spec": claim}}}
                      if v["name"] == cache else v for v in pod["volumes"]]
    pod.pop("initContainers", None)
    if vllm.cache.pre_pull:
        pod = {"initContainers": [pull(sub)], **pod}
        spec["template"]["spec"] = pod
    headless = service(ctx, name=replicas_name, component=COMPONENT_MODEL_CANARY, ports=[("http", VLLM_PORT)])
    headless["spec"]["clusterIP"] = "None"
    return [service(ctx, name=name, component=COMPONENT_MODEL_CANARY, ports=[("http", VLLM_PORT)]), headless,
            deployment]
