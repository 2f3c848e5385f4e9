"""The built-in autoscaler of a self-hosted model: how many replicas for the load its gateways report.

The decision itself is `aistack.api.scale_policy.decide()` (pure, shared with `aistack up`'s local
engines); the load comes from the Lease the stack's gateways report on.

`autoscale()` applies a decision to a stack's model Deployment through the scale subresource; the
reconcile calls it, so a gateway's report (a change of the load Lease) or a pending scale-down's
time (`Decision.recheck_at`) triggers it. What it remembers between reconciles (`ScaleMemory`) lives
in the operator's memory: a restarted operator starts its delays again, which only postpones a
scale-down.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aistack.api.model_load import Load, total_load
from aistack.api.scale_policy import Decision, ScaleMemory, ScalePolicy, decide
from aistack.api.v1alpha1.model import ModelAutoscaling
from aistack.operator.apply import ChildKey
from aistack.operator.kube import CHILD_KINDS, Kube

# the policy's names too: the reconcile and the operator's runner import them from here
__all__ = ["Decision", "ScaleMemory", "ScalePolicy", "autoscale", "current_replicas", "decide", "load_of"]


def current_replicas(deployment: Mapping[str, Any]) -> int:
    """The Deployment's desired count (the API server's default, 1, when it names none)."""
    replicas = (deployment.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def load_of(lease: Mapping[str, Any] | None, *, now: float) -> Load:
    """The stack's load from the load Lease as the watch cache holds it."""
    annotations = ((lease or {}).get("metadata") or {}).get("annotations") or {}
    return total_load(annotations, now=now)


def autoscale(kube: Kube, *, namespace: str, scaling: ModelAutoscaling, model: ChildKey,
              live: Mapping[ChildKey, Mapping[str, Any]], lease: ChildKey, now: float,
              memory: ScaleMemory) -> tuple[Decision, bool]:
    """Decide for the stack's model and set the count through the scale subresource when it
    changes; (the decision, whether it scaled). The report that goes stale first is a recheck too."""
    deployment = live[model]
    current = current_replicas(deployment)
    load = load_of(live.get(lease), now=now)
    stale_at = load.expires_at
    decision = decide(ScalePolicy.of(scaling), current=current, demand=load.demand, waiting=load.waiting,
                      now=now, memory=memory)
    if stale_at is not None:
        soonest = min(decision.recheck_at or stale_at, stale_at)
        decision = Decision(decision.replicas, decision.memory, soonest, decision.reason)
    if decision.replicas == current:
        return decision, False
    kube.patch(CHILD_KINDS["Deployment"], namespace, model[1], {"spec": {"replicas": decision.replicas}},
               subresource="scale")
    return decision, True
