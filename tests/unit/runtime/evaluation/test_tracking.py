"""The evaluation run's per-question table holds no raw PII where the stack's rails mask it: an
evaluation's questions are requests, and MLflow keeps whatever it is given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aistack.api.manifests import parse_stack
from aistack.runtime.evaluation.runner import Outcome, Verdict
from aistack.runtime.evaluation.tracking import TABLE_ARTIFACT, log_run

EMAIL, CARD = "jane.doe@example.com", "4111 1111 1111 1111"


def stack(guardrails: dict[str, Any] | None) -> Any:
    spec: dict[str, Any] = {"model": {"provider": "openai", "name": "gpt-4o-mini", "openai": {
        "baseUrl": "https://api.openai.com/v1", "apiKeySecretRef": {"name": "openai", "key": "k"}}},
        "observability": {}}
    if guardrails is not None:
        spec["guardrails"] = guardrails
    return parse_stack({"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack",
                        "metadata": {"name": "demo"}, "spec": spec})


def logged_table(tmp_path: Path, guardrails: dict[str, Any] | None) -> str:
    import mlflow

    outcome = Outcome(question=f"I am {EMAIL}, card {CARD}: refund?", reference=f"Mail {EMAIL}.",
                      expected_sources=[], expected_refusal=False, answer=f"We wrote to {EMAIL}.")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_id, _ = log_run(tracking_uri=uri, stack=stack(guardrails), values={}, outcomes=[outcome],
                        verdict=Verdict(passed=True, failures=[]), dataset="eval.jsonl", endpoint="http://x")
    path = mlflow.MlflowClient(uri).download_artifacts(run_id, TABLE_ARTIFACT, str(tmp_path))
    return json.dumps(json.loads(Path(path).read_text()))


@pytest.mark.slow
def test_the_table_is_masked_where_the_stack_masks_pii(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a sqlite store keeps artifacts in ./mlruns
    table = logged_table(tmp_path / "masked", {"input": ["pii_mask"]})
    assert EMAIL not in table and "4111" not in table
    assert "I am [EMAIL], card [CARD]: refund?" in table and "We wrote to [EMAIL]." in table
    plain = logged_table(tmp_path / "plain", None)
    assert EMAIL in plain, "a stack without the mask keeps its questions as written"


@pytest.mark.slow
def test_a_canarys_run_is_tagged_and_never_a_promotions_evidence(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`aistack eval --model-version canary` logs a canary-evaluation run: the promotion gate, which
    takes the latest evaluation run of a config hash, still finds the stable version's."""
    import mlflow

    from aistack.api.config_hash import config_hash
    from aistack.api.conventions import experiment_name
    from aistack.cli.promotion.runs import latest_evaluation_run

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    demo = stack(None)
    outcome = Outcome(question="q", reference="r", expected_sources=[], expected_refusal=False, answer="a")
    runs = {}
    for version in ("stable", "canary"):  # the canary's run is the newer one
        runs[version], _ = log_run(tracking_uri=uri, stack=demo, values={"answer_f1": 0.5},
                                   outcomes=[outcome], verdict=Verdict(passed=True, failures=[]),
                                   dataset="eval.jsonl", endpoint="http://x", model_version=version)
    tags = {v: mlflow.MlflowClient(uri).get_run(runs[v]).data.tags for v in runs}
    assert tags["canary"]["aistack.run_kind"] == "canary-evaluation"
    assert tags["canary"]["aistack.model_version"] == "canary"
    assert tags["stable"]["aistack.run_kind"] == "evaluation"
    found = latest_evaluation_run(uri=uri, experiments=[experiment_name(namespace="default", name="demo",
                                                                        configured=None)],
                                  config_hash=config_hash(demo.spec))
    assert found is not None and found.run_id == runs["stable"]
