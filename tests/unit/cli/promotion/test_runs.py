"""Where promotion looks for evaluation runs: tracking URI and experiments (no server needed)."""

from __future__ import annotations

import pytest

from aistack.api.manifests import parse_stack
from aistack.api.v1alpha1 import AIStack
from aistack.cli.promotion.runs import TrackingError, experiments_of, latest_evaluation_run, tracking_uri


def stack(namespace: str, *, experiment: str | None = None, external: str | None = None) -> AIStack:
    mlflow = {"external": {"trackingUri": external}} if external else {"managed": {}}
    obs = {"mlflow": mlflow, **({"experiment": experiment} if experiment else {})}
    return parse_stack({"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack",
                        "metadata": {"name": "rag", "namespace": namespace},
                        "spec": {"model": {"provider": "vllm", "name": "m"}, "observability": obs}})


def test_tracking_uri_prefers_the_flag_then_the_environment_then_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    external = stack("ai-dev", external="https://mlflow.example.com")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://from-env:5000")
    assert tracking_uri(explicit="http://flag:5000", stack=external) == "http://flag:5000"
    assert tracking_uri(explicit=None, stack=external) == "http://from-env:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri(explicit=None, stack=external) == "https://mlflow.example.com"
    with pytest.raises(TrackingError, match="pass --tracking-uri"):
        tracking_uri(explicit=None, stack=stack("ai-dev"))


def test_experiments_follow_the_conventions_without_repeats() -> None:
    assert experiments_of(stack("ai-dev"), stack("ai-staging")) == ["aistack/ai-dev/rag", "aistack/ai-staging/rag"]
    assert experiments_of(stack("ai-dev", experiment="rag"), stack("ai-prod", experiment="rag")) == ["rag"]


def test_an_unreachable_mlflow_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with pytest.raises(TrackingError, match="MLflow at http://127.0.0.1:9"):
        latest_evaluation_run(uri="http://127.0.0.1:9", experiments=["x"], config_hash="abc")
