"""Find the evaluation run of a configuration in MLflow (the contract in `aistack.api.conventions`).

`aistack eval` logs each run in the stack's experiment with the tags `RUN_TAG_KIND=evaluation`
and `RUN_TAG_CONFIG_HASH=<hash>`; a run counts only for exactly the configuration it evaluated.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime

from aistack.api import conventions as c
from aistack.api.v1alpha1 import AIStack
from aistack.cli.promotion.gate import EvaluationRun


class TrackingError(RuntimeError):
    """MLflow cannot be asked; the message says which URI was tried and how to pass another."""


def tracking_uri(*, explicit: str | None, stack: AIStack) -> str:
    """`--tracking-uri`, else MLFLOW_TRACKING_URI, else the stack's external MLflow."""
    if explicit:
        return explicit
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    obs = stack.spec.observability
    if obs is not None and obs.mlflow.external is not None:
        return obs.mlflow.external.tracking_uri
    raise TrackingError(
        f"no MLflow to ask for evaluation runs: stage {stack.spec.stage!r} uses a managed in-cluster MLflow; "
        f"pass --tracking-uri (e.g. after `kubectl port-forward` to its Service) or set MLFLOW_TRACKING_URI"
    )


def experiments_of(*stacks: AIStack) -> list[str]:
    """The experiments the stacks log to, in order, without repeats."""
    names = []
    for stack in stacks:
        configured = stack.spec.observability.experiment if stack.spec.observability else None
        name = c.experiment_name(namespace=stack.namespace, name=stack.name, configured=configured)
        if name not in names:
            names.append(name)
    return names


def latest_evaluation_run(*, uri: str, experiments: list[str], config_hash: str) -> EvaluationRun | None:
    """The most recent finished evaluation run tagged with `config_hash`, or None."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        found = {n: client.get_experiment_by_name(n) for n in experiments}
        ids = {e.experiment_id: n for n, e in found.items() if e is not None}
        if not ids:
            return None
        runs = client.search_runs(
            experiment_ids=list(ids),
            filter_string=(
                f"tags.`{c.RUN_TAG_CONFIG_HASH}` = '{config_hash}' "
                f"and tags.`{c.RUN_TAG_KIND}` = '{c.RUN_KIND_EVALUATION}' "
                "and attributes.status = 'FINISHED'"
            ),
            order_by=["attributes.end_time DESC", "attributes.start_time DESC"],
            max_results=1,
        )
    except MlflowException as err:
        raise TrackingError(f"asking MLflow at {uri} for evaluation runs failed: {err.message}") from None
    except OSError as err:
        raise TrackingError(f"MLflow at {uri} cannot be reached: {err}") from None
    if not runs:
        return None
    run = runs[0]
    millis = run.info.end_time or run.info.start_time
    return EvaluationRun(
        run_id=run.info.run_id,
        experiment=ids[run.info.experiment_id],
        finished=datetime.fromtimestamp(millis / 1000, tz=UTC),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
    )


RunFinder = Callable[[AIStack, AIStack, str], EvaluationRun | None]


def mlflow_finder(*, explicit_uri: str | None) -> RunFinder:
    """`find(source_stack, target_stack, config_hash)` over MLflow, for `plan.promote`.

    The tracking URI is resolved from the source stage only when a run is actually needed, so a
    no-op promotion never asks for one.
    """

    def find(source: AIStack, target: AIStack, config_hash: str) -> EvaluationRun | None:
        uri = tracking_uri(explicit=explicit_uri, stack=source)
        return latest_evaluation_run(uri=uri, experiments=experiments_of(source, target), config_hash=config_hash)

    return find
