"""The canary judged on the evaluation metrics: its evaluation Job (`canary_evaluation_job()`), when
the operator creates it (`_to_apply()`), and what `decide()` does with each of its outcomes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from aistack.api.canary_report import CanaryReport, VersionStats
from aistack.api.manifests import parse_stack
from aistack.api.v1alpha1.canary import CanarySpec
from aistack.operator.apply import LAST_APPLIED, applied_record
from aistack.operator.canary import CanaryDecision, CanaryEvaluation, decide
from aistack.operator.reconcile import _to_apply
from aistack.operator.render import render
from aistack.operator.status import evaluation_verdict

T0 = 1_700_000_000.0
JOB = "shop-eval-canary-0123456789"
ANALYSIS = {"windowSeconds": 60, "minRequests": 20, "steps": [50, 100], "stepIntervalSeconds": 30}


def spec(**analysis: Any) -> CanarySpec:
    return CanarySpec.model_validate({"name": "org/model-v2", "weight": 10,
                                      "analysis": {**ANALYSIS, **analysis}})


def lease(*, canary_errors: int, at: float) -> dict[str, Any]:
    versions = {"stable": VersionStats(), "canary": VersionStats()}
    for _ in range(100):
        versions["stable"].observe(0.2, ok=True)
    for i in range(20):
        versions["canary"].observe(0.2, ok=i >= canary_errors)
    report = CanaryReport(at=at, window=60, versions=versions).encode()
    return {"metadata": {"annotations": {"canary.aistack.dev/gw-1": report}}}


def running(verdict: str | None = "Running") -> CanaryEvaluation:
    return CanaryEvaluation(JOB, verdict)  # type: ignore[arg-type]


def started(canary: CanarySpec) -> dict[str, Any]:
    decision = decide(canary, previous=None, lease=None, now=T0, evaluation=running(None))
    assert decision.status["evaluation"] == {"job": JOB, "verdict": "Running"}
    return decision.status


def test_no_step_is_taken_while_the_canarys_evaluation_runs() -> None:
    canary = spec()
    status = started(canary)
    held = decide(canary, previous=status, lease=lease(canary_errors=0, at=T0 + 40), now=T0 + 40,
                  evaluation=running())
    assert held.status["weight"] == 10 and held.status["verdict"] == "Progressing"
    assert held.status["reason"] == f"waiting for the canary's evaluation (job {JOB})"
    assert held.event is None
    # the gateways' checks still act meanwhile: a canary failing them is rolled back
    bad = decide(canary, previous=held.status, lease=lease(canary_errors=10, at=T0 + 41), now=T0 + 41,
                 evaluation=running())
    assert bad.status["verdict"] == "RolledBack" and bad.status["weight"] == 0


def test_a_failed_evaluation_rolls_the_canary_back_with_a_warning_naming_the_job() -> None:
    canary = spec()
    status = started(canary)
    failed = decide(canary, previous=status, lease=lease(canary_errors=0, at=T0 + 5), now=T0 + 5,
                    evaluation=running("Failed"))
    assert (failed.status["weight"], failed.status["verdict"]) == (0, "RolledBack")
    assert failed.status["evaluation"] == {"job": JOB, "verdict": "Failed"}
    assert failed.event is not None and failed.event[:2] == ("Warning", "CanaryRolledBack")
    assert "10 -> 0" in failed.event[2] and f"kubectl logs job/{JOB}" in failed.event[2]
    assert "0.05" in failed.status["reason"]
    # rolled back for good: a later passing window changes nothing
    after = decide(canary, previous=failed.status, lease=lease(canary_errors=0, at=T0 + 90), now=T0 + 90,
                   evaluation=running("Failed"))
    assert after.status == failed.status and after.event is None


def test_an_evaluation_that_could_not_run_holds_the_steps_without_a_rollback() -> None:
    canary = spec()
    status = started(canary)
    error = decide(canary, previous=status, lease=lease(canary_errors=0, at=T0 + 40), now=T0 + 40,
                   evaluation=running("Error"))
    assert (error.status["weight"], error.status["verdict"]) == (10, "Progressing")
    assert "could not run" in error.status["reason"] and f"kubectl delete job {JOB}" in error.status["reason"]
    assert error.event is not None and error.event[:2] == ("Warning", "CanaryEvaluationError")
    again = decide(canary, previous=error.status, lease=lease(canary_errors=0, at=T0 + 50), now=T0 + 50,
                   evaluation=running("Error"))
    assert again.event is None and again.status == error.status  # one Event, one status write


def test_a_passed_evaluation_leaves_the_steps_to_the_gateways_reports() -> None:
    canary = spec()
    status = started(canary)
    held = decide(canary, previous=status, lease=lease(canary_errors=0, at=T0 + 40), now=T0 + 40,
                  evaluation=running())
    passed = decide(canary, previous=held.status, lease=lease(canary_errors=0, at=T0 + 41), now=T0 + 41,
                    evaluation=running("Passed"))
    # the interval had passed while the evaluation ran: the first step is taken at once
    assert (passed.status["weight"], passed.status["step"]) == (50, 0)
    assert passed.status["evaluation"] == {"job": JOB, "verdict": "Passed"}
    assert passed.event is not None and passed.event[1] == "CanaryStepped"
    early = decide(canary, previous=status, lease=lease(canary_errors=0, at=T0 + 5), now=T0 + 5,
                   evaluation=running("Passed"))
    assert early.status["weight"] == 10 and early.event is not None
    assert early.event[:2] == ("Normal", "CanaryEvaluationPassed")
    assert "waiting" not in early.status["reason"]


def test_the_verdict_survives_its_job_and_a_restarted_operator() -> None:
    canary = spec()
    status = started(canary)
    passed = decide(canary, previous=status, lease=None, now=T0 + 5, evaluation=running("Passed")).status
    # a new operator reads the status from the object; the Job was deleted meanwhile
    gone = decide(canary, previous=copy.deepcopy(passed), lease=lease(canary_errors=0, at=T0 + 31),
                  now=T0 + 31, evaluation=running(None))
    assert gone.status["evaluation"] == {"job": JOB, "verdict": "Passed"} and gone.status["weight"] == 50
    # an error is not remembered that way: its Job deleted runs again
    error = decide(canary, previous=status, lease=None, now=T0 + 5, evaluation=running("Error")).status
    rerun = decide(canary, previous=error, lease=None, now=T0 + 6, evaluation=running(None))
    assert rerun.status["evaluation"] == {"job": JOB, "verdict": "Running"}


def test_a_canary_without_analysis_or_evaluation_has_none() -> None:
    plain = decide(spec(), previous=None, lease=None, now=T0).status
    assert plain["evaluation"] is None
    manual = CanarySpec.model_validate({"name": "org/model-v2", "weight": 10})
    assert decide(manual, previous=None, lease=None, now=T0,
                  evaluation=running()).status["evaluation"] is None


def job(conditions: list[dict[str, str]]) -> dict[str, Any]:
    return {"status": {"conditions": conditions}}


@pytest.mark.parametrize(("conditions", "verdict"), [
    ([], None),
    ([{"type": "Complete", "status": "True"}], "Passed"),
    ([{"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
       "message": "Container eval for pod ns/p failed with exit code 1 matching FailJob rule at index 0"}],
     "Failed"),
    ([{"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
       "message": "Container eval for pod ns/p failed with exit code 2 matching FailJob rule at index 1"}],
     "Error"),
    ([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too long"}], "Error"),
])
def test_an_evaluation_jobs_exit_code_is_its_verdict(conditions: list[dict[str, str]],
                                                     verdict: str | None) -> None:
    assert evaluation_verdict(job(conditions)) == verdict


# the render and when the operator creates the Job

def stack(**canary: Any) -> dict[str, Any]:
    return {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack",
            "metadata": {"name": "shop", "namespace": "ai"},
            "spec": {"model": {"provider": "vllm", "name": "Qwen/Qwen2.5-0.5B-Instruct",
                               "canary": {"name": "Qwen/Qwen2.5-1.5B-Instruct", "weight": 10,
                                          "analysis": {"steps": [50, 100]}, **canary}},
                     "gateway": {"apiKeysSecretRef": {"name": "keys", "key": "keys"}},
                     "observability": {"mlflow": {"external": {
                         "trackingUri": "https://mlflow.example.com",
                         "tokenSecretRef": {"name": "mlflow", "key": "token"}}}},
                     "evaluation": {"dataset": {"configMapKeyRef": {"name": "qa", "key": "q.jsonl"}},
                                    "thresholds": {"answer_token_f1": {"min": 0.5}}}}}


def jobs_of(doc: dict[str, Any], **kw: Any) -> dict[str, dict[str, Any]]:
    rendered = render(parse_stack(doc), version="9.9.9", **kw)
    return {m["metadata"]["labels"]["app.kubernetes.io/component"]: m for m in rendered.manifests
            if m["kind"] == "Job"}


def test_the_canarys_evaluation_job_is_the_stacks_evaluation_job_comparing_both_versions() -> None:
    found = jobs_of(stack())
    stable, canary = found["evaluation"], found["canary-evaluation"]
    assert canary["metadata"]["name"].startswith("shop-eval-canary-")
    [stable_container] = stable["spec"]["template"]["spec"]["containers"]
    [container] = canary["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [*stable_container["args"], "--compare-stable"]
    # the same hardening, secrets by env refs only, the same podFailurePolicy
    assert {k: v for k, v in container.items() if k != "args"} == \
        {k: v for k, v in stable_container.items() if k != "args"}
    assert canary["spec"]["podFailurePolicy"] == stable["spec"]["podFailurePolicy"]
    pod, stable_pod = canary["spec"]["template"]["spec"], stable["spec"]["template"]["spec"]
    assert {k: v for k, v in pod.items() if k != "containers"} == \
        {k: v for k, v in stable_pod.items() if k != "containers"}
    assert pod["automountServiceAccountToken"] is False
    assert all("valueFrom" in e or e["name"] in ("HOME", "HF_HOME", "MLFLOW_TRACKING_TOKEN")
               for e in container["env"])


def test_a_changed_canary_is_evaluated_again_a_weight_step_is_not() -> None:
    name = jobs_of(stack())["canary-evaluation"]["metadata"]["name"]
    assert jobs_of(stack(), canary_weight=50)["canary-evaluation"]["metadata"]["name"] == name
    assert jobs_of(stack(name="Qwen/Qwen2.5-3B-Instruct"))["canary-evaluation"]["metadata"]["name"] != name


def test_no_canary_evaluation_without_analysis_or_a_dataset_the_job_can_mount() -> None:
    doc = stack()
    del doc["spec"]["model"]["canary"]["analysis"]
    assert "canary-evaluation" not in jobs_of(doc)
    doc = stack()
    doc["spec"]["evaluation"]["dataset"] = {"path": "eval.jsonl"}
    assert jobs_of(doc) == {}


def available(manifest: dict[str, Any]) -> dict[str, Any]:
    """The Deployment as the API server holds it once applied and rolled out."""
    live = copy.deepcopy(manifest)
    live["metadata"].setdefault("annotations", {})[LAST_APPLIED] = applied_record(manifest)
    replicas = manifest["spec"].get("replicas", 1)
    return {**live, "status": {"availableReplicas": replicas, "readyReplicas": replicas}}


def created(doc: dict[str, Any], canary: dict[str, Any] | None) -> set[str]:
    """The Jobs `_to_apply()` lets through with the gateway serving this render."""
    rendered = render(parse_stack(doc), version="9.9.9")
    live = {rendered.gateway: available(rendered.manifest(rendered.gateway))}
    decision = CanaryDecision(canary, None, None) if canary is not None else None
    return {m["metadata"]["name"] for m in _to_apply(rendered, live, decision) if m["kind"] == "Job"}


def test_the_operator_creates_the_job_once_the_canary_has_started_and_never_again_after_a_verdict() -> None:
    doc = stack()
    name = jobs_of(doc)["canary-evaluation"]["metadata"]["name"]
    waiting = {"weight": 0, "verdict": "Progressing", "since": None, "evaluation": None}
    assert name not in created(doc, waiting)
    running_ = {"weight": 10, "verdict": "Progressing", "since": "2026-01-01T00:00:00Z",
                "evaluation": {"job": name, "verdict": "Running"}}
    assert name in created(doc, running_)
    assert name not in created(doc, {**running_, "evaluation": {"job": name, "verdict": "Passed"}})
    assert name not in created(doc, {**running_, "verdict": "RolledBack"})
    assert name in created(doc, {**running_, "evaluation": {"job": name, "verdict": "Error"}})
