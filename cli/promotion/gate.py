"""The promotion gate: does an evaluation run let a configuration into a stage?

Pure (the clock is an argument), so every refusal class is tested without MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aistack.api.conventions import RUN_TAG_MODEL, RUN_TAG_OFFLINE_MODEL
from aistack.api.v1alpha1.mlops import EvaluationSpec


@dataclass(frozen=True)
class EvaluationRun:
    """An MLflow evaluation run, as far as the gate cares."""

    run_id: str
    experiment: str
    finished: datetime
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricCheck:
    """One threshold against the run's value (None: the run did not log the metric)."""

    metric: str
    value: float | None
    min: float | None
    max: float | None

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        return (self.min is None or self.value >= self.min) and (self.max is None or self.value <= self.max)

    def describe(self) -> str:
        bounds = " and ".join(b for b in (
            f">= {self.min:g}" if self.min is not None else "",
            f"<= {self.max:g}" if self.max is not None else "",
        ) if b)
        value = "not logged" if self.value is None else f"{self.value:.6g}"
        return f"{self.metric} = {value} (needs {bounds}): {'ok' if self.passed else 'FAILED'}"


@dataclass(frozen=True)
class Verdict:
    """Whether the gate opens, why not, and the checks behind it."""

    allowed: bool
    reason: str
    run: EvaluationRun | None = None
    checks: list[MetricCheck] = field(default_factory=list)

    @property
    def failing(self) -> list[MetricCheck]:
        return [c for c in self.checks if not c.passed]


def judge(
    *,
    run: EvaluationRun | None,
    config_hash: str,
    stage: str,
    evaluation: EvaluationSpec | None,
    now: datetime,
    max_age: timedelta | None = None,
) -> Verdict:
    """Check a run against a stage's evaluation gate; `max_age` overrides the stage's own."""
    if evaluation is None:
        return Verdict(False,
                       f"stage {stage!r} declares no evaluation gate (spec.evaluation); add thresholds "
                              f"to its overlay so promotions into it are checked", run)
    if run is None:
        return Verdict(False, f"no evaluation run for config hash {config_hash}: run `aistack eval` against "
                              f"the source stage (it logs the run with this hash), then promote again")
    limit = max_age if max_age is not None else timedelta(hours=evaluation.max_run_age_hours)
    checks = [
        MetricCheck(name, run.metrics.get(name), bound.min, bound.max)
        for name, bound in sorted(evaluation.thresholds.items())
    ]
    if run.tags.get(RUN_TAG_OFFLINE_MODEL) == "true":
        return Verdict(False,
                       f"the latest evaluation run {run.run_id} was answered by the offline local model "
                              f"({run.tags.get(RUN_TAG_MODEL, 'unknown')}), not the stack's model: evaluate "
                              f"against the real model endpoint", run, checks)
    age = now - run.finished
    if age > limit:
        return Verdict(False, f"the latest evaluation run {run.run_id} is {_hours(age)} old; stage {stage!r} "
                              f"accepts runs up to {_hours(limit)}: evaluate again", run, checks)
    if any(not c.passed for c in checks):
        failing = "; ".join(c.describe() for c in checks if not c.passed)
        return Verdict(False, f"run {run.run_id} fails the thresholds of stage {stage!r}: {failing}", run,
                       checks)
    return Verdict(True, f"run {run.run_id} meets the {len(checks)} threshold(s) of stage {stage!r}", run,
                   checks)


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f}h"


def metrics_lines(verdict: Verdict) -> list[str]:
    """One line per threshold check (for the terminal and the commit message)."""
    return [c.describe() for c in verdict.checks]
