"""What a gateway pod reports of the two model versions of a canary (`spec.model.canary`): the
contract between the gateway (`aistack.runtime.gateway.canary`) and the operator's analysis
(`aistack.operator.canary`).

Each gateway pod counts, per version (`stable`, `canary`), the model calls of the last
`windowSeconds`: how many, how many failed, and their latencies in the fixed buckets of
`LATENCY_BUCKETS`. It writes them as one annotation, `canary.aistack.dev/<pod>`, of the same Lease
the gateways report the model's load on (`aistack.api.model_load`: one Lease, one right, `patch`),
every `report_interval()` while its window holds a request. The operator adds up the fresh reports
(written within a window and an interval) and judges the canary on the sum; no gateway is polled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aistack.api.model_load import report_key

ANNOTATION_PREFIX = "canary.aistack.dev/"
VERSIONS = ("stable", "canary")
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Upper bounds (seconds) of the latency buckets; one more bucket holds what is slower."""


def canary_key(pod: str) -> str:
    """The annotation of one gateway pod."""
    return ANNOTATION_PREFIX + report_key(pod).split("/", 1)[1]


def report_interval(window_s: float) -> float:
    """How often a pod writes while it has traffic: a tenth of the window, 5 to 30 seconds."""
    return min(30.0, max(5.0, window_s / 10))


@dataclass
class VersionStats:
    """One version's model calls in a window."""

    requests: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))

    def observe(self, seconds: float, *, ok: bool) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                return
        self.buckets[-1] += 1

    def add(self, other: VersionStats) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float | None:
        """The `q` quantile of the latencies, interpolated within its bucket (None without any);
        one slower than the last bound counts as that bound."""
        total = sum(self.buckets)
        if not total:
            return None
        rank = q * total
        seen = 0
        lower = 0.0
        for i, count in enumerate(self.buckets):
            upper = LATENCY_BUCKETS[i] if i < len(LATENCY_BUCKETS) else LATENCY_BUCKETS[-1]
            if count and seen + count >= rank:
                return lower + (upper - lower) * max(0.0, rank - seen) / count
            seen += count
            lower = upper
        return LATENCY_BUCKETS[-1]

    def encode(self) -> list[object]:
        return [self.requests, self.errors, self.buckets]

    @classmethod
    def decode(cls, data: object) -> VersionStats | None:
        if not isinstance(data, list) or len(data) != 3 or not isinstance(data[2], list) \
                or len(data[2]) != len(LATENCY_BUCKETS) + 1:
            return None
        try:
            stats = cls(requests=int(data[0]), errors=int(data[1]), buckets=[int(b) for b in data[2]])
        except (TypeError, ValueError):
            return None
        ok = stats.requests >= 0 and 0 <= stats.errors <= stats.requests and min(stats.buckets) >= 0
        return stats if ok else None


@dataclass
class CanaryReport:
    """One gateway pod's window."""

    at: float
    """When it was written (Unix seconds)."""
    window: float
    """The window it covers (seconds)."""
    versions: dict[str, VersionStats]

    def encode(self) -> str:
        return json.dumps({"at": round(self.at, 3), "window": self.window,
                           "v": {name: stats.encode() for name, stats in sorted(self.versions.items())}},
                          separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> CanaryReport | None:
        try:
            data = json.loads(text)
            at, window = float(data["at"]), float(data["window"])
            versions = {name: VersionStats.decode(value) for name, value in dict(data["v"]).items()
                        if name in VERSIONS}
        except (ValueError, TypeError, KeyError):
            return None
        if not math.isfinite(at) or any(v is None for v in versions.values()):
            return None
        return cls(at=at, window=window, versions={k: v for k, v in versions.items() if v is not None})


def total_stats(annotations: Mapping[str, str], *, now: float,
                window_s: float) -> dict[str, VersionStats]:
    """The sum of the fresh reports (written within a window and an interval of `now`), per version."""
    out = {name: VersionStats() for name in VERSIONS}
    stale_after = window_s + report_interval(window_s)
    for key, value in annotations.items():
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        report = CanaryReport.decode(value)
        if report is None or now - report.at > stale_after:
            continue
        for name, stats in report.versions.items():
            out[name].add(stats)
    return out


def merged(parts: Sequence[VersionStats]) -> VersionStats:
    out = VersionStats()
    for part in parts:
        out.add(part)
    return out
