"""A real MLflow server on loopback (one per session) and a GitOps repo with three stages."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from aistack.api import conventions as c
from aistack.runtime.local.ports import free_port

ROOT = Path(__file__).resolve().parents[3]
STACK = ROOT / "examples" / "production.yaml"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Promo Tester", "GIT_AUTHOR_EMAIL": "promo@example.com",
    "GIT_COMMITTER_NAME": "Promo Tester", "GIT_COMMITTER_EMAIL": "promo@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` with a sqlite store, started once and stopped at the end."""
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
         "--default-artifact-root", str(home / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=home,
        # No background job runner (huey consumers): evaluation lookups need only the REST API,
        # and the extra processes cost the 2-core CI seconds.
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start:\n{(home / 'server.log').read_text()[-3000:]}")
        time.sleep(0.3)
    yield uri
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


class RunLogger:
    """Logs evaluation runs the way `aistack eval` does (the conventions' tags and metrics)."""

    def __init__(self, uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)

    def log(self, *, experiment: str, config_hash: str, metrics: dict[str, float],
            age: timedelta = timedelta(0),
            kind: str = c.RUN_KIND_EVALUATION, stage: str = "dev") -> str:
        exp = self.client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        finished = datetime.now(UTC) - age
        millis = int(finished.timestamp() * 1000)
        run = self.client.create_run(exp_id, start_time=millis - 60_000, tags={
            c.RUN_TAG_KIND: kind, c.RUN_TAG_CONFIG_HASH: config_hash, c.RUN_TAG_STAGE: stage,
            c.RUN_TAG_STACK: "ai-prod/support-copilot", c.RUN_TAG_VERDICT: "passed",
        })
        for name, value in metrics.items():
            self.client.log_metric(run.info.run_id, name, value, timestamp=millis)
        self.client.set_terminated(run.info.run_id, end_time=millis)
        return str(run.info.run_id)


@pytest.fixture(scope="session")
def runs(mlflow_uri: str) -> RunLogger:
    return RunLogger(mlflow_uri)


def run_git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout


@pytest.fixture(scope="session")
def git() -> Callable[..., str]:
    """`git(repo, *args)` -> stdout, with a fixed identity and no user config."""
    return run_git


@pytest.fixture(scope="session")
def stack_file() -> Path:
    return STACK


@pytest.fixture
def gitops_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repo with `deploy/` scaffolded from the production example (dev, staging, prod)."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from aistack.cli.promotion.layout import load_stack_doc, scaffold

    repo = tmp_path / "repo"
    repo.mkdir()
    run_git(repo, "init", "-q", "-b", "main")
    scaffold(root=repo / "deploy", stack_doc=load_stack_doc(STACK), stages=["dev", "staging", "prod"])
    # prod gates harder than staging.
    prod = repo / "deploy" / "stages" / "prod" / "stage.yaml"
    doc = yaml.safe_load(prod.read_text())
    doc["spec"]["evaluation"]["thresholds"]["answer_token_f1"] = {"min": 0.7}
    prod.write_text(yaml.safe_dump(doc, sort_keys=False))
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", "scaffold")
    return repo
