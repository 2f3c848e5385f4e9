"""The canary's weight in force and its verdict (`status.model.canary`), from what the gateways report.

The spec (`spec.model.canary`) is the user's, and GitOps': the operator never edits it. What it
owns is the weight the gateways use, rendered into their config and shown in status:

- a canary it has not seen (or whose spec changed: `specHash`) starts at the spec's `weight` once its
  own Deployment has its pods available (until then its weight is 0: a canary still pulling its
  weights would fail its share of the requests, and its analysis with them);
- without `analysis` the weight is the spec's (`Manual`);
- with `analysis`, each reconcile (every gateway report is a Lease write the operator's watch hears)
  judges the canary on the summed windows (`aistack.api.canary_report`): a failed check sets the
  weight to 0 for good (`RolledBack`, with a Warning Event; the canary's pods are kept), a window
  with fewer than `minRequests` canary calls decides nothing, and with `steps` a weight that has
  passed for `stepIntervalSeconds` moves to the next step (`Progressing`, then `Promoted` at the
  last one, after which nothing is judged: make the canary the stable model in the spec).

With `analysis` in a stack that declares `evaluation` on a ConfigMap dataset, the canary's evaluation
Job (`aistack eval --compare-stable`, created once the canary has started) gates it too: no step is
taken while it runs, nor after it could not run (`Error`: the canary is not shown bad, so it is not
rolled back either), a failed one rolls the canary back, and a passed one leaves the stepping to the
gateways' reports. Its outcome is in `status.model.canary.evaluation`.

`decide()` is pure (the clock, the reports and the Job's outcome are passed in). What it remembers
lives in the status it writes, so a restarted operator continues where the last one stopped.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aistack.api.canary_report import VersionStats, total_stats
from aistack.api.v1alpha1.canary import CanaryAnalysis, CanarySpec


@dataclass(frozen=True)
class CanaryDecision:
    status: dict[str, Any]
    """`status.model.canary` (wire form)."""
    event: tuple[str, str, str] | None
    """(type, reason, message) when the weight or verdict changed."""
    recheck_at: float | None
    """When to look again though no report arrives (the next step is due)."""


@dataclass(frozen=True)
class CanaryEvaluation:
    """The canary's evaluation Job as the operator's watch cache holds it."""

    job: str
    verdict: Literal["Running", "Passed", "Failed", "Error"] | None
    """None: the Job does not exist (not created yet, or deleted)."""


def spec_hash(canary: CanarySpec) -> str:
    wire = canary.model_dump(mode="json", by_alias=True, exclude_none=True)
    return hashlib.sha256(json.dumps(wire, sort_keys=True).encode()).hexdigest()[:12]


def _parse(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _rfc3339(now: float) -> str:
    moment = datetime.datetime.fromtimestamp(int(now), tz=datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


def judge(analysis: CanaryAnalysis, stable: VersionStats, canary: VersionStats) -> tuple[bool | None, str]:
    """(passed, why): None while the window holds too few canary calls to tell."""
    if canary.requests < analysis.min_requests:
        return None, (f"waiting for {analysis.min_requests} canary requests in the "
                      f"{analysis.window_seconds}s window (have {canary.requests})")
    errors = (f"error rate {canary.error_rate:.1%} against stable {stable.error_rate:.1%} "
              f"({canary.requests} and {stable.requests} requests)")
    if canary.error_rate - stable.error_rate > analysis.max_error_rate_increase:
        return False, f"{errors}: more than {analysis.max_error_rate_increase:.1%} over stable"
    canary_p95, stable_p95 = canary.quantile(0.95), stable.quantile(0.95)
    if canary_p95 is None or stable_p95 is None or stable.requests < analysis.min_requests:
        return True, f"{errors}; latency not compared (too few stable requests)"
    latency = f"p95 {canary_p95:.3f}s against stable {stable_p95:.3f}s"
    if canary_p95 > analysis.max_latency_ratio * stable_p95:
        return False, f"{latency}: over {analysis.max_latency_ratio:g}x stable; {errors}"
    return True, f"{errors}; {latency}"


def evaluation_status(evaluation: CanaryEvaluation | None,
                      previous: Mapping[str, Any] | None) -> dict[str, str] | None:
    """`status.model.canary.evaluation`: the Job's verdict, `Running` until it has one; a Job gone
    after it passed or failed keeps its verdict (the status remembers it, the Job is not re-run),
    one gone after an error runs again."""
    if evaluation is None:
        return None
    kept = dict((previous or {}).get("evaluation") or {})
    if evaluation.verdict is None and kept.get("job") == evaluation.job and kept.get("verdict") in (
            "Passed", "Failed"):
        return kept
    return {"job": evaluation.job, "verdict": evaluation.verdict or "Running"}


def decide(canary: CanarySpec, *, previous: Mapping[str, Any] | None, lease: Mapping[str, Any] | None,
           now: float, ready: bool = True, evaluation: CanaryEvaluation | None = None) -> CanaryDecision:
    """The canary's status after this reconcile; `previous` is `status.model.canary` as last
    written, `lease` the load Lease as the watch cache holds it, `ready` whether the canary's own
    Deployment has its pods available (always, for an adapter or API canary), `evaluation` the
    canary's evaluation Job (None: the stack has none)."""
    digest = spec_hash(canary)
    prev = dict(previous) if previous and previous.get("specHash") == digest else None
    analysis = canary.analysis
    steps = analysis.steps if analysis is not None else []
    if prev is not None and prev.get("since") is None:
        prev = None  # it was waiting for its pods
    status: dict[str, Any]
    if prev is None and not ready:
        status = {"weight": 0, "step": None, "verdict": "Progressing" if steps else "Manual",
                  "reason": f"waiting for the canary's pods to be ready before it takes {canary.weight}%",
                  "since": None, "specHash": digest, "evaluation": None}
        return CanaryDecision(status, None, None)
    if prev is None:
        status = {"weight": canary.weight, "step": None, "verdict": "Progressing" if steps else "Manual",
                  "reason": f"started at weight {canary.weight}" + (
                      f", analysed against stable, then steps {steps}" if steps else
                      ", analysed against stable" if analysis is not None else ""),
                  "since": _rfc3339(now), "specHash": digest,
                  "evaluation": evaluation_status(evaluation, None) if analysis is not None else None}
        due = now + analysis.step_interval_seconds if steps and analysis is not None else None
        what = canary.name or canary.adapter or "a new image or flags"
        event = ("Normal", "CanaryStarted", f"canary at weight {canary.weight}: {what}")
        return CanaryDecision(status, event, due)
    if analysis is None or prev.get("verdict") in ("RolledBack", "Promoted"):
        return CanaryDecision(prev, None, None)
    was = (prev.get("evaluation") or {}).get("verdict")
    prev = {**prev, "evaluation": evaluation_status(evaluation, prev)}
    verdict = (prev["evaluation"] or {}).get("verdict")
    job = (prev["evaluation"] or {}).get("job")
    if verdict == "Failed":
        failed = (f"the canary's evaluation (job {job}) failed: it missed evaluation.thresholds or scored "
                  f"worse than stable by more than {analysis.max_evaluation_regression:g}; "
                  f"`kubectl logs job/{job}` has both versions' metrics")
        status = {**prev, "weight": 0, "verdict": "RolledBack", "reason": failed, "since": _rfc3339(now)}
        return CanaryDecision(status, ("Warning", "CanaryRolledBack",
                                       f"canary weight {prev.get('weight')} -> 0: {failed}"), None)
    annotations = ((lease or {}).get("metadata") or {}).get("annotations") or {}
    stats = total_stats(annotations, now=now, window_s=analysis.window_seconds)
    passed, why = judge(analysis, stats["stable"], stats["canary"])
    if passed is False:
        status = {**prev, "weight": 0, "verdict": "RolledBack", "reason": why, "since": _rfc3339(now)}
        return CanaryDecision(status, ("Warning", "CanaryRolledBack",
                                       f"canary weight {prev.get('weight')} -> 0: {why}"), None)
    if verdict in ("Running", "Error"):  # no step before the canary's evaluation has passed
        held = f"waiting for the canary's evaluation (job {job})" if verdict == "Running" else (
            f"the canary's evaluation (job {job}) could not run, so no step is taken (not a rollback: the "
            f"canary is not shown worse); `kubectl logs job/{job}` says why, `kubectl delete job {job}` "
            "runs it again")
        error = ("Warning", "CanaryEvaluationError", held) if verdict == "Error" and was != "Error" else None
        return CanaryDecision({**prev, "reason": held}, error, None)
    since = _parse(prev.get("since")) or now
    due = since + analysis.step_interval_seconds
    evaluated = ("Normal", "CanaryEvaluationPassed", f"the canary's evaluation (job {job}) passed") \
        if verdict == "Passed" and was != "Passed" else None
    if passed is None or not steps or now < due:
        # a new reason only when the kind of verdict changes: a status write per report is not worth
        # fresher numbers (the gateways' /metrics have them)
        same = str(prev.get("reason", "")).split(" ", 1)[0] == why.split(" ", 1)[0] and evaluated is None
        status = prev if same else {**prev, "reason": why}
        return CanaryDecision(status, evaluated, due if steps else None)
    step = prev.get("step")
    index = 0 if step is None else int(step) + 1
    weight = steps[index]
    last = index == len(steps) - 1
    status = {**prev, "weight": weight, "step": index, "verdict": "Promoted" if last else "Progressing",
              "reason": why, "since": _rfc3339(now)}
    moved = f"canary weight {prev.get('weight')} -> {weight}{' (the last step)' if last else ''}: {why}"
    event = ("Normal", "CanaryPromoted" if last else "CanaryStepped", moved)
    return CanaryDecision(status, event, None if last else now + analysis.step_interval_seconds)
