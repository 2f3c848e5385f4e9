"""The load a gateway pod reports for its stack's self-hosted model: the contract between the
gateway (`aistack.runtime.gateway.demand`) and the operator's autoscaler (`aistack.operator.autoscale`).

Each gateway pod writes one annotation of the Lease `<stack>-model-load` (a child of the stack),
`load.aistack.dev/<pod>`, with a merge patch: its requests in flight to the model plus those it
holds while the model has no replica (`demand`), the held ones alone (`held`), what the model's
engines say of themselves when the gateway reads their `/metrics` (`waiting`: vLLM's queued
requests summed over the replicas it routes to; `kv`: the highest KV-cache usage among them) and
when it wrote (`at`, Unix seconds). It writes only when its demand changes materially (zero to some, some to
zero, or by half a replica's worth: `material()`, of the demand or of the waiting requests), at once
when it starts holding a request, and every `HEARTBEAT_SECONDS` while its demand is not zero; an
entry older than `REPORT_TTL_SECONDS` is a gone pod's and counts as nothing. The demands of the
gateways add up (each counts its own requests); the engines' numbers do not (every gateway reads
the same replicas), so the load takes the largest report of those. The operator learns of each
write from its watch of the children: no gateway is polled.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

LOAD_COMPONENT = "model-load"
"""`child_name(stack, LOAD_COMPONENT)` is the Lease."""
ANNOTATION_PREFIX = "load.aistack.dev/"
HEARTBEAT_SECONDS = 60.0
REPORT_TTL_SECONDS = 180.0
_NAME = re.compile(r"[^A-Za-z0-9._-]")


def report_key(pod: str) -> str:
    """The annotation of one gateway pod (an annotation's name part: 63 characters at most)."""
    name = _NAME.sub("-", pod).strip("-._")[-63:].strip("-._") or "gateway"
    return ANNOTATION_PREFIX + name


@dataclass(frozen=True)
class LoadReport:
    """One gateway pod's report."""

    demand: int
    """Requests in flight to the model or held for it."""
    held: int
    """Of those, the requests waiting for a replica (the model is at zero or starting)."""
    at: float
    """When it was written (Unix seconds)."""
    waiting: int = 0
    """Requests waiting in the model's engines (vLLM's queue), over the replicas this pod reads."""
    kv: float | None = None
    """The highest KV-cache usage (0-1) among those replicas; None: no engine metrics read."""

    def encode(self) -> str:
        data: dict[str, float] = {"demand": self.demand, "held": self.held, "at": round(self.at, 3)}
        if self.waiting:
            data["waiting"] = self.waiting
        if self.kv is not None:
            data["kv"] = round(self.kv, 3)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> LoadReport | None:
        """None for anything that is not a report (a hand-edited or truncated value)."""
        try:
            data = json.loads(text)
            kv = data.get("kv")
            report = cls(demand=int(data["demand"]), held=int(data["held"]), at=float(data["at"]),
                         waiting=int(data.get("waiting", 0)), kv=None if kv is None else float(kv))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        valid = report.demand >= 0 and report.held >= 0 and report.waiting >= 0 and math.isfinite(report.at) \
            and (report.kv is None or 0 <= report.kv <= 1)
        return report if valid else None


@dataclass(frozen=True)
class Load:
    """The sum of the fresh reports of a stack's gateways."""

    demand: int = 0
    held: int = 0
    waiting: int = 0
    """The largest fresh report of the engines' queued requests (each gateway reads every replica)."""
    kv: float | None = None
    expires_at: float | None = None
    """When the oldest non-zero report counted here goes stale (the load may drop then)."""


def total_load(annotations: Mapping[str, str], *, now: float) -> Load:
    """The stack's load from the Lease's annotations, leaving out stale reports."""
    demand = held = waiting = 0
    kv: float | None = None
    expires: list[float] = []
    for key, value in annotations.items():
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        report = LoadReport.decode(value)
        if report is None or now - report.at > REPORT_TTL_SECONDS:
            continue
        demand += report.demand
        held += report.held
        waiting = max(waiting, report.waiting)
        if report.kv is not None:
            kv = report.kv if kv is None else max(kv, report.kv)
        if report.demand or report.waiting:
            expires.append(report.at + REPORT_TTL_SECONDS)
    return Load(demand=demand, held=held, waiting=waiting, kv=kv,
                expires_at=min(expires) if expires else None)


def material(old: int, new: int, *, target: int, zero: bool = True) -> bool:
    """Whether a pod's demand moved enough to tell the autoscaler: to or from zero, or by half a
    replica's target (smaller moves change no replica count). `zero=False` (the engines' queue,
    which has requests in flight behind it, so the demand already says the model is busy): only by
    half a target."""
    if zero and (old == 0) != (new == 0):
        return True
    return abs(new - old) >= max(1, target // 2)
