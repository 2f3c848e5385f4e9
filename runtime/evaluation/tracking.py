"""Logging an evaluation as an MLflow run that `aistack promote` can find.

The run follows the contract in `aistack.api.conventions`: the stack's experiment, the
run-kind / config-hash / stage / stack / model / verdict tags; params model, config_hash and
stage; one metric per computed `EVAL_METRICS` name; the per-question table as an artifact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aistack.api import conventions as c
from aistack.api.config_hash import config_hash
from aistack.api.v1alpha1 import AIStack
from aistack.runtime.evaluation.runner import Outcome, Verdict
from aistack.runtime.guardrails.fast import mask_pii

TABLE_ARTIFACT = "eval/questions.json"
OFFLINE_MODEL_TAG = c.RUN_TAG_OFFLINE_MODEL


def log_run(*, tracking_uri: str, stack: AIStack, values: dict[str, float], outcomes: Sequence[Outcome],
            verdict: Verdict, dataset: str, endpoint: str, served_model: str | None = None,
            offline_model: bool = False, model_version: str | None = None, comparison: bool = False,
            compared_with: str | None = None) -> tuple[str, str]:
    """Log one run; returns (run id, run URL in the MLflow UI).

    `served_model` is what answered (the offline model of `aistack up` serves under its own
    name); such a run is tagged `aistack.offline_model=true` so promotion can refuse it.
    `model_version` (a pinned version of a canary split) is tagged too; a canary's run is of kind
    `canary-evaluation`, so promotion, which reads `evaluation` runs, never takes it as evidence;
    so are both runs of a `comparison` (`aistack eval --compare-stable`: the canary's gate, not the
    stable config's evidence), the canary's tagged with the stable run it was `compared_with`.
    """
    import mlflow
    from mlflow.environment_variables import MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT
    from mlflow.tracking import MlflowClient

    # the caller shows the URL returned; MLflow's own "View run" lines would land among its results
    MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.set("true")
    spec = stack.spec
    experiment = c.experiment_name(namespace=stack.namespace, name=stack.name,
                                   configured=spec.observability.experiment if spec.observability else None)
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    digest = config_hash(spec)
    kind = c.RUN_KIND_CANARY_EVALUATION if model_version == "canary" or comparison else c.RUN_KIND_EVALUATION
    tags = {
        c.RUN_TAG_KIND: kind, c.RUN_TAG_CONFIG_HASH: digest, c.RUN_TAG_STAGE: spec.stage,
        c.RUN_TAG_STACK: f"{stack.namespace}/{stack.name}", c.RUN_TAG_MODEL: spec.model.public_name,
        c.RUN_TAG_VERDICT: "passed" if verdict.passed else "failed",
        OFFLINE_MODEL_TAG: "true" if offline_model else "false",
        **({c.RUN_TAG_MODEL_VERSION: model_version} if model_version else {}),
        **({c.RUN_TAG_COMPARED_WITH: compared_with} if compared_with else {}),
    }
    version = f"-{model_version}" if model_version else ""
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"eval-{spec.stage}-{digest}{version}",
                          tags=tags) as run:
        mlflow.log_params({"model": served_model or spec.model.public_name, "config_hash": digest,
                           "stage": spec.stage,
                           "dataset": dataset, "endpoint": endpoint, "questions": len(outcomes)})
        mlflow.log_metrics(values)
        columns: dict[str, list[Any]] = {}
        for row in table_rows(stack, outcomes):
            for key, value in row.items():
                columns.setdefault(key, []).append(value)
        mlflow.log_table(data=columns, artifact_file=TABLE_ARTIFACT)
        thresholds = {k: v.model_dump(exclude_none=True) for k, v in
                      (spec.evaluation.thresholds.items() if spec.evaluation else [])}
        mlflow.log_dict({"thresholds": thresholds, "failures": verdict.failures}, "eval/verdict.json")
        run_id = run.info.run_id
    return run_id, f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def table_rows(stack: AIStack, outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """The per-question table: its texts masked as the stack's rails mask a request, where it masks
    PII (an evaluation's questions are requests, and MLflow keeps what it is given)."""
    rails = stack.spec.guardrails
    masks = rails is not None and ("pii_mask" in rails.input or "pii_mask" in rails.output)
    rows = [outcome.row() for outcome in outcomes]
    if masks:
        for row in rows:
            for key in ("question", "reference", "answer", "error"):
                if isinstance(row.get(key), str):
                    row[key] = mask_pii(row[key])
    return rows
