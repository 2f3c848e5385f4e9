"""A canary against the stable version on the same questions (`aistack eval --compare-stable`),
as the canary's evaluation Job runs it: both versions pinned through the gateway, both runs logged,
and the canary judged on the spec's thresholds and on how much worse than stable it scores.

Why one command for both versions: the two runs must see the same questions, the same scoring
embedder and the same moment of the gateway, and the verdict needs both sets of numbers; two Jobs
would leave the comparison to the operator, which reads only a Job's exit code (never MLflow).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aistack.api.v1alpha1.canary import CanaryAnalysis
from aistack.api.v1alpha1.mlops import LATENCY_METRICS, LOWER_IS_BETTER, Threshold
from aistack.runtime.evaluation.evaluate import (
    EvaluationPlan,
    EvaluationProgress,
    EvaluationResult,
    EvaluationUnavailable,
    ask_versions,
    logged,
)
from aistack.runtime.evaluation.runner import Outcome, Verdict, aggregate, check_thresholds

NOT_SERVED = "canary_not_served"
"""The gateway's error code for a canary pin when it serves no canary (`runtime/gateway/auth.py`)."""
_EPSILON = 1e-9


@dataclass(frozen=True, kw_only=True)
class ComparisonResult:
    stable: EvaluationResult
    canary: EvaluationResult
    """Its verdict holds the thresholds it missed and its regressions against stable."""
    regressions: list[str]
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.canary.verdict.passed


def regressions(*, stable: Mapping[str, float], canary: Mapping[str, float],
                thresholds: Mapping[str, Threshold], tolerance: float) -> list[str]:
    """The thresholded metrics on which the canary scores worse than stable by more than `tolerance`:
    points for the shares and scores, a fraction of the stable's value for the latencies. A metric
    either run did not compute is left to the thresholds (which fail the canary's missing one)."""
    found = []
    for name in sorted(thresholds):
        before, after = stable.get(name), canary.get(name)
        if before is None or after is None:
            continue
        worse = after - before if name in LOWER_IS_BETTER else before - after
        allowed = tolerance * before if name in LATENCY_METRICS else tolerance
        if worse > allowed + _EPSILON:
            found.append(f"{name}: canary {after:.4g} against stable {before:.4g}, worse by {worse:.4g} "
                         f"(maxEvaluationRegression {tolerance:g} allows {allowed:.4g})")
    return found


async def compare(plan: EvaluationPlan, *, progress: EvaluationProgress) -> ComparisonResult:
    """Raises EvaluationUnavailable when the stack has no canary, the gateway serves none, every
    question failed on stable (the gateway does not work), or a run cannot be logged. A canary that
    fails every question is not unavailable: it is scored (error rate 1) and fails."""
    canary_spec = plan.stack.spec.model.canary
    if canary_spec is None:
        raise EvaluationUnavailable("--compare-stable needs a canary (spec.model.canary) to compare")
    tolerance = (canary_spec.analysis or CanaryAnalysis()).max_evaluation_regression
    stable, canary = await ask_versions(plan, versions=["stable", "canary"], progress=progress)
    if all(o.error for o in stable):
        raise EvaluationUnavailable(f"every question failed against {plan.base_url} (stable version); "
                                    f"first error: {stable[0].error}")
    refused = next((o.error for o in canary if o.error and NOT_SERVED in o.error), None)
    if refused is not None:
        raise EvaluationUnavailable(f"the gateway at {plan.base_url} serves no canary yet: {refused}")
    stable_values, canary_values = aggregate(stable), aggregate(canary)
    stable_verdict = check_thresholds(stable_values, plan.thresholds)
    found = regressions(stable=stable_values, canary=canary_values, thresholds=plan.thresholds,
                        tolerance=tolerance)
    missed = check_thresholds(canary_values, plan.thresholds).failures
    canary_verdict = Verdict(passed=not missed and not found, failures=missed + found)
    progress.begin(f"logging both runs to MLflow at {plan.tracking_uri}")
    stable_id, stable_url = await logged(plan, values=stable_values, outcomes=stable, verdict=stable_verdict,
                                         model_version="stable", comparison=True)
    _, canary_url = await logged(plan, values=canary_values, outcomes=canary, verdict=canary_verdict,
                                 model_version="canary", comparison=True, compared_with=stable_id)
    progress.end()
    return ComparisonResult(
        stable=_result(stable_values, stable, stable_verdict, plan, stable_url),
        canary=_result(canary_values, canary, canary_verdict, plan, canary_url),
        regressions=found, tolerance=tolerance)


def _result(values: dict[str, float], outcomes: list[Outcome], verdict: Verdict, plan: EvaluationPlan,
            url: str) -> EvaluationResult:
    return EvaluationResult(values=values, outcomes=outcomes, verdict=verdict, thresholds=plan.thresholds,
                            run_url=url)
