"""Find the evaluation run of a configuration in MLflow (the contract in `aistack.api.conventions`).

`aistack eval` logs each run in the stack's experiment with the tags `RUN_TAG_KIND=evaluation`
and `RUN_TAG_CONFIG_HASH=<hash>`; a run counts only for exactly the configuration it evaluated.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests

from aistack.api import conventions as c
from aistack.api.v1alpha1 import AIStack
from aistack.cli.promotion.gate import EvaluationRun

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient


class TrackingError(RuntimeError):
    """MLflow cannot be asked; the message says which URI was tried and how to pass another."""


PROBE_TIMEOUT_S = 5.0

# MLflow's client defaults (7 retries, backoff factor 2, 120 s per request, Retry-After obeyed)
# are tuned for rate-limited hosted servers: minutes of silence before an answer. A promotion
# waits on one lookup, so a 503/429 or a read timeout is retried a few times, within about a
# minute. Settings the user exported win.
BOUNDED_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
    "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
}


def tracking_uri(*, explicit: str | None, stack: AIStack) -> tuple[str, str]:
    """`--tracking-uri`, else MLFLOW_TRACKING_URI, else the stack's external MLflow; with where
    it came from, so an error about the server names the setting to change."""
    if explicit:
        return explicit, "--tracking-uri"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI (or pass --tracking-uri)"
    obs = stack.spec.observability
    if obs is not None and obs.mlflow.external is not None:
        return obs.mlflow.external.tracking_uri, (f"spec.observability.mlflow.external.trackingUri of stage "
                                                  f"{stack.spec.stage!r} (or pass --tracking-uri)")
    raise TrackingError(
        f"no MLflow to ask for evaluation runs: stage {stack.spec.stage!r} uses a managed in-cluster MLflow; "
        f"pass --tracking-uri (e.g. after `kubectl port-forward` to its Service) or set MLFLOW_TRACKING_URI"
    )


def check_reachable(uri: str, *, origin: str) -> None:
    """Fail at once when nothing listens at `uri`: MLflow's client retries a refused connection
    or an unknown host with backoff for minutes, so a typo in the URI looked like a hang.

    Any HTTP answer counts as reachable (a 503 is left to the bounded retries); only http(s)
    URIs are probed (file:, sqlite:, databricks are MLflow's to open).
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    try:
        # requests, as MLflow's client uses: the same proxies and CA settings, and it is
        # installed wherever MLflow is. No credentials are sent.
        requests.get(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT_S, allow_redirects=False)
    except requests.ConnectTimeout:
        reason = f"no connection within {PROBE_TIMEOUT_S:.0f} s"
    except requests.exceptions.SSLError:
        return  # a TLS server answered; MLflow checks it with the user's TLS settings
    except requests.ConnectionError as err:
        reason = _connect_failure(err, host=parts.hostname or uri)
    except requests.RequestException:
        return  # something answered (slowly, or not quite HTTP): MLflow's bounded retries decide
    else:
        return
    raise TrackingError(f"cannot reach the MLflow tracking server at {uri}: {reason}; check {origin}")


def _connect_failure(err: BaseException, *, host: str) -> str:
    """The socket error under requests' and urllib3's wrappers, in a user's words."""
    chain: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for cause in chain:
        if isinstance(cause, socket.gaierror):
            return f"host {host!r} not found ({cause.strerror})"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused (nothing listens on that host and port)"
    return str(chain[-1]) or type(chain[-1]).__name__


@contextmanager
def bounded_retries() -> Iterator[None]:
    """MLflow reads its retry settings from the environment on every request; set
    BOUNDED_RETRIES for the duration of one lookup, leaving any the user set alone."""
    added = {k: v for k, v in BOUNDED_RETRIES.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


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
        with bounded_retries():
            ids, runs = _search(client, experiments=experiments, config_hash=config_hash)
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


def _search(client: MlflowClient, *,
            experiments: list[str], config_hash: str) -> tuple[dict[str, str], list[Run]]:
    found = {n: client.get_experiment_by_name(n) for n in experiments}
    ids = {e.experiment_id: n for n, e in found.items() if e is not None}
    if not ids:
        return ids, []
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
    return ids, list(runs)


RunFinder = Callable[[AIStack, AIStack, str], EvaluationRun | None]


def mlflow_finder(*, explicit_uri: str | None, on_stage: Callable[[str], None] = lambda _: None) -> RunFinder:
    """`find(source_stack, target_stack, config_hash)` over MLflow, for `plan.promote`.

    The tracking URI is resolved from the source stage only when a run is actually needed, so a
    no-op promotion never asks for one. `on_stage` hears what is being waited on.
    """

    def find(source: AIStack, target: AIStack, config_hash: str) -> EvaluationRun | None:
        uri, origin = tracking_uri(explicit=explicit_uri, stack=source)
        on_stage(f"asking MLflow at {uri} for the evaluation run of config {config_hash}")
        check_reachable(uri, origin=origin)
        return latest_evaluation_run(uri=uri, experiments=experiments_of(source, target),
                                     config_hash=config_hash)

    return find
