"""Where promotion looks for evaluation runs: tracking URI and experiments (no server needed)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aistack.api.manifests import parse_stack
from aistack.api.v1alpha1 import AIStack
from aistack.cli.promotion.runs import (
    BOUNDED_RETRIES,
    TrackingError,
    check_reachable,
    experiments_of,
    latest_evaluation_run,
    tracking_uri,
)


def stack(namespace: str, *, experiment: str | None = None, external: str | None = None) -> AIStack:
    mlflow = {"external": {"trackingUri": external}} if external else {"managed": {}}
    obs = {"mlflow": mlflow, **({"experiment": experiment} if experiment else {})}
    return parse_stack({"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack",
                        "metadata": {"name": "rag", "namespace": namespace},
                        "spec": {"model": {"provider": "vllm", "name": "m"}, "observability": obs}})


def test_tracking_uri_prefers_the_flag_then_the_environment_then_the_stack(
        monkeypatch: pytest.MonkeyPatch) -> None:
    external = stack("ai-dev", external="https://mlflow.example.com")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert tracking_uri(explicit="http://flag:5000", stack=external) == ("http://flag:5000", "--tracking-uri")
    assert tracking_uri(explicit=None, stack=external) == (
        "http://from-env:5000", "MLFLOW_TRACKING_URI (or pass --tracking-uri)")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri(explicit=None, stack=external) == (
        "https://mlflow.example.com",
        "spec.observability.mlflow.external.trackingUri of stage 'dev' (or pass --tracking-uri)")
    with pytest.raises(TrackingError, match="pass --tracking-uri"):
        tracking_uri(explicit=None, stack=stack("ai-dev"))


def test_experiments_follow_the_conventions_without_repeats() -> None:
    assert experiments_of(stack("ai-dev"), stack("ai-staging")) == ["aistack/ai-dev/rag",
                                                                    "aistack/ai-staging/rag"]
    assert experiments_of(stack("ai-dev", experiment="rag"), stack("ai-prod", experiment="rag")) == ["rag"]


def test_an_unreachable_mlflow_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(TrackingError, match="MLflow at http://127.0.0.1:9"):
        latest_evaluation_run(uri="http://127.0.0.1:9", experiments=["x"], config_hash="abc")


class _Busy(BaseHTTPRequestHandler):
    """A live server that is overloaded: 503 with a Retry-After of an hour, every time."""

    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(503)
        self.send_header("Retry-After", "3600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def busy_server() -> Iterator[str]:
    _Busy.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_busy_server_is_reachable_and_retried_a_bounded_number_of_times(
    busy_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in BOUNDED_RETRIES:
        monkeypatch.delenv(key, raising=False)
    check_reachable(busy_server, origin="--tracking-uri")  # a 503 is an answer, not an unreachable server
    _Busy.hits = 0
    started = time.monotonic()
    with pytest.raises(TrackingError, match=f"asking MLflow at {busy_server} for evaluation runs failed"):
        latest_evaluation_run(uri=busy_server, experiments=["x"], config_hash="abc")
    assert time.monotonic() - started < 60  # MLflow's defaults: minutes (and the Retry-After: an hour)
    assert _Busy.hits == 1 + int(BOUNDED_RETRIES["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    assert not set(BOUNDED_RETRIES) & set(os.environ)  # the limits last for the lookup only


def test_retry_settings_the_user_exported_win(busy_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(TrackingError):
        latest_evaluation_run(uri=busy_server, experiments=["x"], config_hash="abc")
    assert _Busy.hits == 1
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"


@pytest.mark.parametrize(("uri", "reason"), [
    ("http://127.0.0.1:9", "connection refused"),
    ("http://no-such-mlflow.invalid:5000", "host 'no-such-mlflow.invalid' not found"),
])
def test_an_unreachable_server_fails_at_once_naming_the_setting(uri: str, reason: str) -> None:
    with pytest.raises(TrackingError) as info:
        check_reachable(uri, origin="MLFLOW_TRACKING_URI (or pass --tracking-uri)")
    message = str(info.value)
    assert message.startswith(f"cannot reach the MLflow tracking server at {uri}: {reason}")
    assert message.endswith("; check MLFLOW_TRACKING_URI (or pass --tracking-uri)")


def test_only_http_uris_are_probed() -> None:
    check_reachable("file:///nonexistent/mlruns", origin="--tracking-uri")
    check_reachable("databricks", origin="--tracking-uri")
