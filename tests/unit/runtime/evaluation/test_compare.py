"""`regressions()`: how much worse than stable the canary may score, per thresholded metric."""

from __future__ import annotations

import pytest

from aistack.api.v1alpha1.mlops import Threshold
from aistack.runtime.evaluation.compare import regressions

F1 = {"answer_token_f1": Threshold(min=0.5)}


@pytest.mark.parametrize(("stable", "canary", "regressed"), [
    (0.80, 0.75, False),  # exactly the tolerance, in points
    (0.80, 0.74, True),
    (0.80, 0.95, False),  # better is never a regression
    (0.02, 0.00, False),
])
def test_scores_compare_in_points(stable: float, canary: float, regressed: bool) -> None:
    found = regressions(stable={"answer_token_f1": stable}, canary={"answer_token_f1": canary},
                        thresholds=F1, tolerance=0.05)
    assert bool(found) is regressed
    if regressed:
        assert found[0].startswith("answer_token_f1: canary 0.74 against stable 0.8")


def test_lower_is_better_for_error_rate_and_latency_which_compares_as_a_fraction() -> None:
    thresholds = {"error_rate": Threshold(max=0.1), "latency_p95_ms": Threshold(max=5000)}
    ok = regressions(stable={"error_rate": 0.02, "latency_p95_ms": 1000},
                     canary={"error_rate": 0.07, "latency_p95_ms": 1050}, thresholds=thresholds,
                     tolerance=0.05)
    assert ok == []
    bad = regressions(stable={"error_rate": 0.02, "latency_p95_ms": 1000},
                      canary={"error_rate": 0.08, "latency_p95_ms": 1060}, thresholds=thresholds,
                      tolerance=0.05)
    assert [b.split(":")[0] for b in bad] == ["error_rate", "latency_p95_ms"]
    assert "allows 50" in bad[1]  # 5% of the stable's 1000 ms


def test_only_thresholded_metrics_count_and_a_missing_one_is_left_to_the_thresholds() -> None:
    assert regressions(stable={"groundedness": 0.9, "answer_token_f1": 0.8},
                       canary={"groundedness": 0.1}, thresholds=F1, tolerance=0.05) == []
