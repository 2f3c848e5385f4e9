"""How many replicas a self-hosted model needs for its load: the one policy behind the operator's
built-in autoscaler (`aistack.operator.autoscale`, a Deployment's replicas) and `aistack up`'s
local engines (`aistack.runtime.local.engine_scaler`), so both scale alike.

`decide()` is pure (the clock and what it remembers are passed in), so its stability is tested by
driving it with load curves. The load is two numbers: the demand the gateways count (requests in
flight to the model plus those held while it has no replica) and, with `targetWaiting`, the
requests the engines themselves queue (vLLM's `num_requests_waiting`, summed over the replicas).
The rules:

- up at once to the larger of `ceil(demand / targetRequests)` and `ceil(waiting / targetWaiting)`
  (held requests count: a model at zero with one held request goes to 1), never above `maxReplicas`;
- down only to a count that would carry both at 80% of their targets (`DOWN_BAND`: a load that
  hovers around a step's edge does not flap between two counts), and only once the load has
  stayed that low for `scaleDownDelaySeconds`;
- to zero (with `minReplicas: 0`) only after `idleSeconds` without any demand;
- never below `minReplicas`, never above `maxReplicas`, whatever the current count.

A queue that more replicas drain lets the waiting rule ask for fewer again; the requests rule and
the scale-down delay keep that from flapping faster than the delay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aistack.api.v1alpha1.model import ModelAutoscaling

DOWN_BAND = 0.8
"""A lower count is chosen only if it carries the load at this share of the target."""


@dataclass(frozen=True, kw_only=True)
class ScalePolicy:
    min_replicas: int
    max_replicas: int
    target: int
    """Requests in flight or held per replica."""
    down_delay_s: float
    idle_s: float
    target_waiting: int | None = None
    """Requests the engines queue per replica; None: the engines' queue is not a signal."""

    @classmethod
    def of(cls, scaling: ModelAutoscaling) -> ScalePolicy:
        return cls(min_replicas=scaling.min_replicas, max_replicas=scaling.max_replicas,
                   target=scaling.target_requests, down_delay_s=scaling.scale_down_delay_seconds,
                   idle_s=scaling.idle_seconds, target_waiting=scaling.target_waiting)

    def needed(self, demand: int, waiting: int, *, band: float = 1.0) -> tuple[int, str]:
        """Replicas for the load at `band` of the targets, and which signal asks for them."""
        by_demand = math.ceil(demand / (self.target * band))
        if self.target_waiting is None:
            return by_demand, "demand"
        by_waiting = math.ceil(waiting / (self.target_waiting * band))
        return (by_waiting, "waiting") if by_waiting > by_demand else (by_demand, "demand")


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


def decide(policy: ScalePolicy, *, current: int, demand: int, now: float, memory: ScaleMemory,
           waiting: int = 0) -> Decision:
    """The replica count for `demand` (requests in flight or held, over all gateways) and `waiting`
    (requests queued in the engines)."""
    busy = demand > 0 or waiting > 0
    busy_at = now if busy or memory.busy_at is None else memory.busy_at
    floor = max(policy.min_replicas, 1 if busy else 0)
    need, signal = policy.needed(demand, waiting)
    up = min(max(need, floor), policy.max_replicas)
    if up > current:
        why = (f"{waiting} requests waiting in the engines need {up} replicas (targetWaiting "
               f"{policy.target_waiting} each)" if signal == "waiting" else
               f"demand {demand} needs {up} replicas (target {policy.target} each)")
        return Decision(up, ScaleMemory(None, busy_at), None,
                        why if up > policy.min_replicas or busy else f"minReplicas is {policy.min_replicas}")
    if current > policy.max_replicas:
        return Decision(policy.max_replicas, ScaleMemory(None, busy_at), None,
                        f"maxReplicas is {policy.max_replicas}")
    idle_until = busy_at + policy.idle_s
    may_stop = policy.min_replicas == 0 and not busy and now >= idle_until
    fits, _ = policy.needed(demand, waiting, band=DOWN_BAND)
    lower = max(fits, policy.min_replicas, 0 if may_stop else 1)
    # a model that will stop when idle long enough is looked at again then
    stop_at = idle_until if policy.min_replicas == 0 and not busy and current > 0 and not may_stop \
        else None
    if lower >= current:
        return Decision(current, ScaleMemory(None, busy_at), stop_at, "steady")
    if lower == 0:
        return Decision(0, ScaleMemory(None, busy_at), None, f"no request for {policy.idle_s:g}s")
    low_since = memory.low_since if memory.low_since is not None else now
    if now - low_since >= policy.down_delay_s:
        load = f"demand {demand}" + (f", {waiting} waiting" if policy.target_waiting is not None else "")
        return Decision(lower, ScaleMemory(None, busy_at), None,
                        f"{load} stayed low for {policy.down_delay_s:g}s")
    due = low_since + policy.down_delay_s
    return Decision(current, ScaleMemory(low_since, busy_at), min(due, stop_at or due),
                    "waiting to scale down")
