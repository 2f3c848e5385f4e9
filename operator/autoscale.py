"""The built-in autoscaler of a self-hosted model: how many replicas for the load its gateways report.

`decide()` is pure (the clock and what it remembers are passed in), so its stability is tested by
driving it with load curves. The rules:

- up at once to `ceil(demand / targetRequests)` (held requests count: a model at zero with one
  held request goes to 1), never above `maxReplicas`;
- down only to a count that would carry the load at 80% of the target (`DOWN_BAND`: a load that
  hovers around a step's edge does not flap between two counts), and only once the load has
  stayed that low for `scaleDownDelaySeconds`;
- to zero (with `minReplicas: 0`) only after `idleSeconds` without any demand;
- never below `minReplicas`, never above `maxReplicas`, whatever the current count.

`autoscale()` applies a decision to a stack's model Deployment through the scale subresource; the
reconcile calls it, so a gateway's report (a change of the load Lease) or a pending scale-down's
time (`Decision.recheck_at`) triggers it. What it remembers between reconciles (`ScaleMemory`) lives
in the operator's memory: a restarted operator starts its delays again, which only postpones a
scale-down.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aistack.api.model_load import total_load
from aistack.api.v1alpha1.model import ModelAutoscaling
from aistack.operator.apply import ChildKey
from aistack.operator.kube import CHILD_KINDS, Kube

DOWN_BAND = 0.8
"""A lower count is chosen only if it carries the load at this share of the target."""


@dataclass(frozen=True, kw_only=True)
class ScalePolicy:
    min_replicas: int
    max_replicas: int
    target: int
    down_delay_s: float
    idle_s: float

    @classmethod
    def of(cls, scaling: ModelAutoscaling) -> ScalePolicy:
        return cls(min_replicas=scaling.min_replicas, max_replicas=scaling.max_replicas,
                   target=scaling.target_requests, down_delay_s=scaling.scale_down_delay_seconds,
                   idle_s=scaling.idle_seconds)


@dataclass(frozen=True)
class ScaleMemory:
    """What `decide()` needs from its earlier calls."""

    low_since: float | None = None
    """Since when the load has fitted fewer replicas (None: it does not)."""
    busy_at: float | None = None
    """When the model last had demand (or was first seen): the idle window runs from here."""


@dataclass(frozen=True)
class Decision:
    replicas: int
    memory: ScaleMemory
    recheck_at: float | None
    """When to decide again though no load changes (a scale-down waiting for its delay)."""
    reason: str


def decide(policy: ScalePolicy, *, current: int, demand: int, now: float, memory: ScaleMemory) -> Decision:
    """The replica count for `demand` (requests in flight or held, over all gateways)."""
    busy_at = now if demand > 0 or memory.busy_at is None else memory.busy_at
    floor = max(policy.min_replicas, 1 if demand > 0 else 0)
    up = min(max(math.ceil(demand / policy.target), floor), policy.max_replicas)
    if up > current:
        return Decision(up, ScaleMemory(None, busy_at), None,
                        f"demand {demand} needs {up} replicas (target {policy.target} each)"
                        if up > policy.min_replicas or demand else f"minReplicas is {policy.min_replicas}")
    if current > policy.max_replicas:
        return Decision(policy.max_replicas, ScaleMemory(None, busy_at), None,
                        f"maxReplicas is {policy.max_replicas}")
    idle_until = busy_at + policy.idle_s
    may_stop = policy.min_replicas == 0 and demand == 0 and now >= idle_until
    fits = math.ceil(demand / (policy.target * DOWN_BAND))
    lower = max(fits, policy.min_replicas, 0 if may_stop else 1)
    # a model that will stop when idle long enough is looked at again then
    stop_at = idle_until if policy.min_replicas == 0 and demand == 0 and current > 0 and not may_stop \
        else None
    if lower >= current:
        return Decision(current, ScaleMemory(None, busy_at), stop_at, "steady")
    if lower == 0:
        return Decision(0, ScaleMemory(None, busy_at), None, f"no request for {policy.idle_s:g}s")
    low_since = memory.low_since if memory.low_since is not None else now
    if now - low_since >= policy.down_delay_s:
        return Decision(lower, ScaleMemory(None, busy_at), None,
                        f"demand {demand} stayed low for {policy.down_delay_s:g}s")
    due = low_since + policy.down_delay_s
    return Decision(current, ScaleMemory(low_since, busy_at), min(due, stop_at or due),
                    "waiting to scale down")


def current_replicas(deployment: Mapping[str, Any]) -> int:
    """The Deployment's desired count (the API server's default, 1, when it names none)."""
    replicas = (deployment.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def load_of(lease: Mapping[str, Any] | None, *, now: float) -> tuple[int, float | None]:
    """(demand, when a counted report goes stale) from the load Lease as the watch cache holds it."""
    annotations = ((lease or {}).get("metadata") or {}).get("annotations") or {}
    load = total_load(annotations, now=now)
    return load.demand, load.expires_at


def autoscale(kube: Kube, *, namespace: str, scaling: ModelAutoscaling, model: ChildKey,
              live: Mapping[ChildKey, Mapping[str, Any]], lease: ChildKey, now: float,
              memory: ScaleMemory) -> tuple[Decision, bool]:
    """Decide for the stack's model and set the count through the scale subresource when it
    changes; (the decision, whether it scaled). The report that goes stale first is a recheck too."""
    deployment = live[model]
    current = current_replicas(deployment)
    demand, stale_at = load_of(live.get(lease), now=now)
    decision = decide(ScalePolicy.of(scaling), current=current, demand=demand, now=now, memory=memory)
    if stale_at is not None:
        soonest = min(decision.recheck_at or stale_at, stale_at)
        decision = Decision(decision.replicas, decision.memory, soonest, decision.reason)
    if decision.replicas == current:
        return decision, False
    kube.patch(CHILD_KINDS["Deployment"], namespace, model[1], {"spec": {"replicas": decision.replicas}},
               subresource="scale")
    return decision, True
