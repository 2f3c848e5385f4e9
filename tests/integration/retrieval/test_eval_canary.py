"""`aistack eval --compare-stable`, as the canary's evaluation Job runs it: a real gateway with a canary
split over the deterministic OpenAI-compatible upstream, whose two models answer differently (so
the upstream's log says which version each question reached), both runs logged to a real MLflow
server, and the exit code the operator reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from aistack.api import conventions as c
from aistack.api.commands import EvalExit
from aistack.cli.main import app
from aistack.testing.gateway import base_config, run_gateway
from aistack.testing.openai_server import RunningServer, run_openai_server

STABLE, CANARY = "gpt-4o-mini", "gpt-4.1-mini"
QUESTIONS = ["where are vectors stored", "who logs the runs", "what does the gateway split",
             "which version answered this"]


@pytest.fixture
def upstream() -> Iterator[RunningServer]:
    with run_openai_server(models=[STABLE, CANARY]) as server:
        yield server


def manifest(tmp_path: Path, *, name: str, thresholds: dict[str, Any],
             max_regression: float | None = None) -> Path:
    analysis = {} if max_regression is None else {"maxEvaluationRegression": max_regression}
    doc = {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": name},
           "spec": {"model": {"provider": "openai", "name": STABLE,
                              "openai": {"baseUrl": "https://api.openai.com/v1",
                                         "apiKeySecretRef": {"name": "openai", "key": "key"}},
                              "canary": {"name": CANARY, "weight": 10, "analysis": analysis}},
                    "observability": {"mlflow": {"external": {"trackingUri": "http://unused.example.com"}}},
                    "evaluation": {"dataset": {"path": "eval.jsonl"}, "thresholds": thresholds}}}
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"question": q, "reference": q}) + "\n"
                                                 for q in QUESTIONS))
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def gateway_config(upstream: RunningServer, *, canary: bool = True) -> dict[str, Any]:
    config = base_config(upstream.base_url, model={"publicName": STABLE, "primary": {"model": STABLE}})
    if canary:
        config["model"]["canary"] = {"upstream": {"baseUrl": upstream.base_url, "model": CANARY,
                                                  "timeoutSeconds": 5}, "weight": 10, "seed": 3}
    return config


def compare(path: Path, gateway_url: str, tracking_uri: str) -> Any:
    return CliRunner().invoke(app, ["eval", str(path), "--endpoint", gateway_url,
                                    "--tracking-uri", tracking_uri, "--compare-stable"])


def runs(tracking_uri: str, name: str) -> dict[str, Any]:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(f"aistack/default/{name}")
    found = client.search_runs([experiment.experiment_id])
    return {run.data.tags[c.RUN_TAG_MODEL_VERSION]: run for run in found}


def test_a_canary_that_answers_as_well_as_stable_passes_and_both_runs_are_logged(
        tmp_path: Path, upstream: RunningServer, mlflow_server: str) -> None:
    path = manifest(tmp_path, name="same-answers", thresholds={"answer_token_f1": {"min": 0.5},
                                                              "error_rate": {"max": 0.1}})
    with run_gateway(gateway_config(upstream)) as gateway:
        result = compare(path, gateway.url, mlflow_server)
    assert result.exit_code == EvalExit.PASSED, result.output
    # every question asked of each version, pinned past the split (weight 10)
    asked = [(r["model"], r["messages"][-1]["content"]) for r in upstream.requests]
    assert sorted(asked) == sorted([(m, q) for q in QUESTIONS for m in (STABLE, CANARY)])
    assert "canary meets the thresholds and is within 0.05 of stable" in result.output
    logged = runs(mlflow_server, "same-answers")
    assert set(logged) == {"stable", "canary"}
    for run in logged.values():  # neither is a promotion's evidence
        assert run.data.tags[c.RUN_TAG_KIND] == c.RUN_KIND_CANARY_EVALUATION
        assert run.data.tags[c.RUN_TAG_VERDICT] == "passed"
    assert logged["canary"].data.tags[c.RUN_TAG_COMPARED_WITH] == logged["stable"].info.run_id
    f1 = [logged[version].data.metrics["answer_token_f1"] for version in ("stable", "canary")]
    assert f1[0] == f1[1] > 0.8


def test_a_canary_that_misses_the_thresholds_fails_with_both_versions_side_by_side(
        tmp_path: Path, upstream: RunningServer, mlflow_server: str) -> None:
    upstream.configure(answers_by_model={CANARY: "I would rather not say."})
    path = manifest(tmp_path, name="worse-answers", thresholds={"answer_token_f1": {"min": 0.5}})
    with run_gateway(gateway_config(upstream)) as gateway:
        result = compare(path, gateway.url, mlflow_server)
    assert result.exit_code == EvalExit.FAILED, result.output
    table = next(line for line in result.stdout.splitlines() if "answer_token_f1" in line)
    stable_f1, canary_f1 = (float(cell) for cell in table.split("│")[2:4])
    assert stable_f1 > 0.8 and canary_f1 == 0 and "FAIL" in table
    assert "canary: threshold not met answer_token_f1: 0 < min 0.5" in result.output
    assert "canary FAILED" in result.output
    logged = runs(mlflow_server, "worse-answers")
    assert (logged["stable"].data.tags[c.RUN_TAG_VERDICT], logged["canary"].data.tags[c.RUN_TAG_VERDICT]) == \
        ("passed", "failed")


def test_a_canary_within_the_thresholds_but_worse_than_stable_fails_on_the_regression(
        tmp_path: Path, upstream: RunningServer, mlflow_server: str) -> None:
    # the canary answers the question padded with words the reference lacks: F1 ~0.6 against ~0.9
    upstream.configure(answers_by_model={CANARY: "{last} is a fine question to ask"})
    path = manifest(tmp_path, name="regressed", thresholds={"answer_token_f1": {"min": 0.5}},
                    max_regression=0.1)
    with run_gateway(gateway_config(upstream)) as gateway:
        result = compare(path, gateway.url, mlflow_server)
    assert result.exit_code == EvalExit.FAILED, result.output
    table = next(line for line in result.stdout.splitlines() if "answer_token_f1" in line)
    assert "REGRESSED" in table
    assert "canary: regressed answer_token_f1: canary" in result.output
    assert "maxEvaluationRegression 0.1" in result.output
    # the same answers pass with a tolerance wide enough
    path = manifest(tmp_path, name="tolerated", thresholds={"answer_token_f1": {"min": 0.5}},
                    max_regression=0.5)
    with run_gateway(gateway_config(upstream)) as gateway:
        assert compare(path, gateway.url, mlflow_server).exit_code == EvalExit.PASSED


def test_a_gateway_that_serves_no_canary_yet_cannot_run_the_comparison(
        tmp_path: Path, upstream: RunningServer, mlflow_server: str) -> None:
    path = manifest(tmp_path, name="no-split", thresholds={"answer_token_f1": {"min": 0.5}})
    with run_gateway(gateway_config(upstream, canary=False)) as gateway:
        result = compare(path, gateway.url, mlflow_server)
    assert result.exit_code == EvalExit.UNAVAILABLE, result.output
    assert "serves no canary yet" in result.output
    assert all(r["model"] == STABLE for r in upstream.requests)  # the stable model never answered for it
    experiment = MlflowClient(mlflow_server).get_experiment_by_name("aistack/default/no-split")
    assert experiment is None or not MlflowClient(mlflow_server).search_runs([experiment.experiment_id])
