"""The load a gateway pod reports for its stack's self-hosted model: the contract between the
gateway (`aistack.runtime.gateway.demand`) and the operator's autoscaler (`aistack.operator.autoscale`).

Each gateway pod writes one annotation of the Lease `<stack>-model-load` (a child of the stack),
`load.aistack.dev/<pod>`, with a merge patch: its requests in flight to the model plus those it
holds while the model has no replica (`demand`), the held ones alone (`held`) and when it wrote
(`at`, Unix seconds). It writes only when its demand changes materially (zero to some, some to
zero, or by a replica's worth: `material()`), at once when it starts holding a request, and every
`HEARTBEAT_SECONDS` while its demand is not zero; an entry older than `REPORT_TTL_SECONDS` is a
gone pod's and counts as nothing. The operator learns of each write from its watch of the
children: no gateway is polled.
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

    def encode(self) -> str:
        return json.dumps({"demand": self.demand, "held": self.held, "at": round(self.at, 3)},
                          separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> LoadReport | None:
        """None for anything that is not a report (a hand-edited or truncated value)."""
        try:
            data = json.loads(text)
            report = cls(demand=int(data["demand"]), held=int(data["held"]), at=float(data["at"]))
        except (ValueError, TypeError, KeyError):
            return None
        return report if report.demand >= 0 and report.held >= 0 and math.isfinite(report.at) else None


@dataclass(frozen=True)
class Load:
    """The sum of the fresh reports of a stack's gateways."""

    demand: int = 0
    held: int = 0
    expires_at: float | None = None
    """When the oldest non-zero report counted here goes stale (the load may drop then)."""


def total_load(annotations: Mapping[str, str], *, now: float) -> Load:
    """The stack's load from the Lease's annotations, leaving out stale reports."""
    demand = held = 0
    expires: list[float] = []
    for key, value in annotations.items():
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        report = LoadReport.decode(value)
        if report is None or now - report.at > REPORT_TTL_SECONDS:
            continue
        demand += report.demand
        held += report.held
        if report.demand:
            expires.append(report.at + REPORT_TTL_SECONDS)
    return Load(demand=demand, held=held, expires_at=min(expires) if expires else None)


def material(old: int, new: int, *, target: int) -> bool:
    """Whether a pod's demand moved enough to tell the autoscaler: to or from zero, or by half a
    replica's target (smaller moves change no replica count)."""
    if (old == 0) != (new == 0):
        return True
    return abs(new - old) >= max(1, target // 2)
