"""The promotion gate's verdict for each refusal class, with the clock as an argument."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aistack.api.v1alpha1.mlops import EvaluationSpec
from aistack.cli.promotion.gate import EvaluationRun, judge

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
GATE = EvaluationSpec.model_validate({
    "dataset": {"path": "eval.jsonl"}, "maxRunAgeHours": 24,
    "thresholds": {"answer_token_f1": {"min": 0.6}, "latency_p95_ms": {"max": 3000},
                   "groundedness": {"min": 0.5, "max": 1.0}},
})


def run(age_hours: float = 1, **metrics: float) -> EvaluationRun:
    values = {"answer_token_f1": 0.7, "latency_p95_ms": 2000.0, "groundedness": 0.8, **metrics}
    return EvaluationRun("r1", "exp", NOW - timedelta(hours=age_hours), values)


def test_a_fresh_run_meeting_every_threshold_opens_the_gate() -> None:
    verdict = judge(run=run(), config_hash="h", stage="prod", evaluation=GATE, now=NOW)
    assert verdict.allowed and verdict.failing == [] and len(verdict.checks) == 3
    assert "meets the 3 threshold(s) of stage 'prod'" in verdict.reason


def test_no_run_is_refused_with_what_to_do() -> None:
    verdict = judge(run=None, config_hash="abc", stage="prod", evaluation=GATE, now=NOW)
    assert not verdict.allowed and "no evaluation run for config hash abc" in verdict.reason
    assert "aistack eval" in verdict.reason


def test_a_stage_without_a_gate_refuses_everything() -> None:
    verdict = judge(run=run(), config_hash="h", stage="prod", evaluation=None, now=NOW)
    assert not verdict.allowed and "declares no evaluation gate" in verdict.reason


def test_a_stale_run_is_refused_and_max_age_overrides_the_stage() -> None:
    stale = judge(run=run(age_hours=30), config_hash="h", stage="prod", evaluation=GATE, now=NOW)
    assert not stale.allowed and "30.0h old" in stale.reason and "up to 24.0h" in stale.reason
    relaxed = judge(run=run(age_hours=30), config_hash="h", stage="prod", evaluation=GATE, now=NOW,
                    max_age=timedelta(hours=48))
    assert relaxed.allowed
    strict = judge(run=run(age_hours=2), config_hash="h", stage="prod", evaluation=GATE, now=NOW,
                   max_age=timedelta(hours=1))
    assert not strict.allowed


def test_failing_min_max_and_missing_metrics_are_each_named() -> None:
    verdict = judge(run=run(answer_token_f1=0.59, latency_p95_ms=3000.5, groundedness=float("nan")),
                    config_hash="h", stage="prod", evaluation=GATE, now=NOW)
    assert not verdict.allowed
    assert [c.metric for c in verdict.failing] == ["answer_token_f1", "groundedness", "latency_p95_ms"]
    assert "answer_token_f1 = 0.59 (needs >= 0.6): FAILED" in verdict.reason
    assert "latency_p95_ms = 3000.5 (needs <= 3000): FAILED" in verdict.reason
    missing = EvaluationRun("r2", "exp", NOW, {"answer_token_f1": 0.9})
    verdict = judge(run=missing, config_hash="h", stage="prod", evaluation=GATE, now=NOW)
    assert "latency_p95_ms = not logged (needs <= 3000): FAILED" in verdict.reason


def test_bounds_are_inclusive() -> None:
    verdict = judge(run=run(answer_token_f1=0.6, latency_p95_ms=3000.0, groundedness=1.0),
                    config_hash="h", stage="prod", evaluation=GATE, now=NOW)
    assert verdict.allowed


def test_a_run_answered_by_the_offline_local_model_does_not_count() -> None:
    offline = EvaluationRun("r3", "exp", NOW - timedelta(hours=1), run().metrics,
                            tags={"aistack.offline_model": "true",
                                  "aistack.model": "aistack-offline-smollm2-135m"})
    verdict = judge(run=offline, config_hash="h", stage="prod", evaluation=GATE, now=NOW)
    assert not verdict.allowed
    assert "offline local model (aistack-offline-smollm2-135m)" in verdict.reason
    real = EvaluationRun("r4", "exp", NOW - timedelta(hours=1), run().metrics,
                         tags={"aistack.offline_model": "false"})
    assert judge(run=real, config_hash="h", stage="prod", evaluation=GATE, now=NOW).allowed
