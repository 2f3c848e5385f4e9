"""`aistack promote` against a real MLflow server and a real git repository with three stages."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from aistack.api.config_hash import config_hash, promotable_config
from aistack.cli.main import app
from aistack.cli.promotion.fields import PROMOTABLE_PATHS, get
from aistack.cli.promotion.layout import Layout, effective_stack
from aistack.runtime.local.ports import free_port

EXPERIMENT = "support-copilot"  # the example's observability.experiment
GOOD = {"retrieval_hit_rate": 0.9, "answer_token_f1": 0.75, "guardrail_accuracy": 0.97,
        "latency_p95_ms": 2100.0}


def promote(repo: Path, *args: str, uri: str | None) -> Any:
    extra = ["--tracking-uri", uri] if uri else []
    return CliRunner().invoke(app, ["promote", *args, "--repo", str(repo / "deploy"), *extra])


def stage(repo: Path, name: str) -> tuple[dict[str, Any], Any]:
    return effective_stack(Layout(repo / "deploy"), name)


def change_dev(git: Any, repo: Path, **spec_changes: Any) -> str:
    """Edit dev's stage patch (merge-patch style), commit it, and return dev's new config hash."""
    path = repo / "deploy" / "stages" / "dev" / "stage.yaml"
    doc = yaml.safe_load(path.read_text())
    from aistack.cli.promotion.kustomize import merge_patch

    doc["spec"] = merge_patch(doc["spec"], spec_changes)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    git(repo, "commit", "-q", "-am", "dev: try a change")
    return config_hash(stage(repo, "dev")[1].spec)


NEW_BEHAVIOUR = {
    "model": {"name": "Qwen/Qwen2.5-14B-Instruct", "vllm": {"maxModelLen": 8192, "replicas": 1}},
    "retrieval": {"topK": 8, "embedder": {"model": "BAAI/bge-base-en-v1.5"}},
    "orchestration": {"maxSteps": 3},
    "gateway": {"replicas": 1},  # stage-owned: must not reach staging
}


def test_promotion_commits_exactly_the_promotable_fields(
    git: Any, gitops_repo: Path, runs: Any, mlflow_uri: str
) -> None:
    dev_hash = change_dev(git, gitops_repo, **NEW_BEHAVIOUR)
    runs.log(experiment=EXPERIMENT, config_hash="0000000000000000", metrics=GOOD)  # another config
    run_id = runs.log(experiment=EXPERIMENT, config_hash=dev_hash, metrics=GOOD, age=timedelta(hours=2))
    before_doc, before = stage(gitops_repo, "staging")
    head = git(gitops_repo, "rev-parse", "HEAD").strip()

    result = promote(gitops_repo, "dev", "staging", uri=mlflow_uri)

    assert result.exit_code == 0, result.output
    assert "promoted dev -> staging" in result.output
    assert git(gitops_repo, "rev-parse", "HEAD~1").strip() == head
    assert git(gitops_repo, "status", "--porcelain") == ""
    touched = git(gitops_repo, "show", "--name-only", "--format=", "HEAD").split()
    assert sorted(touched) == ["deploy/stages/staging/kustomization.yaml",
                               "deploy/stages/staging/promoted.yaml"]
    message = git(gitops_repo, "log", "-1", "--format=%B")
    assert f"Aistack-Run-Id: {run_id}" in message and f"Aistack-Config-Hash: {dev_hash}" in message
    assert "answer_token_f1 = 0.75 (needs >= 0.5): ok" in message
    assert "model.name: 'Qwen/Qwen2.5-7B-Instruct' -> 'Qwen/Qwen2.5-14B-Instruct'" in message
    assert "Re-ingestion needed in staging: embedder changed" in message

    dev_doc, dev = stage(gitops_repo, "dev")
    after_doc, after = stage(gitops_repo, "staging")
    assert config_hash(after.spec) == dev_hash
    assert promotable_config(after.spec) == promotable_config(dev.spec)
    for path in PROMOTABLE_PATHS:
        assert get(after_doc["spec"], path) == get(dev_doc["spec"], path), path
    # Stage-owned fields keep staging's values, everything else is untouched.
    assert after.spec.stage == "staging" and after.spec.gateway.replicas == 2
    assert after.spec.model.vllm.replicas == 2 and after.spec.model.vllm.gpu.type == "nvidia-l4"
    assert after.spec.evaluation == before.spec.evaluation
    assert after.spec.observability == before.spec.observability
    assert after.spec.retrieval.sources == before.spec.retrieval.sources
    moved = {"model", "retrieval", "orchestration"}
    assert {k: v for k, v in after_doc["spec"].items() if k not in moved} == {
        k: v for k, v in before_doc["spec"].items() if k not in moved}

    # Promoting again is a no-op (no new commit).
    again = promote(gitops_repo, "dev", "staging", uri=mlflow_uri)
    assert again.exit_code == 0 and "nothing to promote" in again.output
    assert git(gitops_repo, "rev-parse", "HEAD~1").strip() == head


def test_prod_applies_its_own_stricter_thresholds(git: Any, gitops_repo: Path, runs: Any,
                                                  mlflow_uri: str) -> None:
    dev_hash = change_dev(git, gitops_repo, orchestration={"maxSteps": 2})
    runs.log(experiment=EXPERIMENT, config_hash=dev_hash, metrics={**GOOD, "answer_token_f1": 0.6})
    assert promote(gitops_repo, "dev", "staging", uri=mlflow_uri).exit_code == 0
    head = git(gitops_repo, "rev-parse", "HEAD").strip()

    result = promote(gitops_repo, "staging", "prod", uri=mlflow_uri)

    assert result.exit_code == 1
    assert "REFUSED staging -> prod" in result.output
    assert "answer_token_f1 = 0.6 (needs >= 0.7): FAILED" in result.output
    assert "retrieval_hit_rate" not in result.output.split("REFUSED")[1]  # only failing metrics in the reason
    assert git(gitops_repo, "rev-parse", "HEAD").strip() == head


def test_refused_without_a_run_for_that_config(git: Any, gitops_repo: Path, runs: Any,
                                               mlflow_uri: str) -> None:
    old_hash = config_hash(stage(gitops_repo, "dev")[1].spec)
    runs.log(experiment=EXPERIMENT, config_hash=old_hash, metrics=GOOD)  # evaluated the *previous* config
    new_hash = change_dev(git, gitops_repo, model={"name": "Qwen/Qwen2.5-3B-Instruct"})
    head = git(gitops_repo, "rev-parse", "HEAD").strip()

    result = promote(gitops_repo, "dev", "staging", uri=mlflow_uri)

    assert result.exit_code == 1
    assert f"no evaluation run for config hash {new_hash}" in result.output
    assert git(gitops_repo, "rev-parse", "HEAD").strip() == head and git(gitops_repo, "status",
                                                                         "--porcelain") == ""


def test_runs_of_another_kind_do_not_count(git: Any, gitops_repo: Path, runs: Any, mlflow_uri: str) -> None:
    dev_hash = change_dev(git, gitops_repo, model={"name": "Qwen/Qwen2.5-1.5B-Instruct"})
    runs.log(experiment=EXPERIMENT, config_hash=dev_hash, metrics=GOOD, kind="training")
    result = promote(gitops_repo, "dev", "staging", uri=mlflow_uri)
    assert result.exit_code == 1 and "no evaluation run" in result.output


def test_refused_for_a_stale_run_and_max_age_overrides(git: Any, gitops_repo: Path, runs: Any,
                                                       mlflow_uri: str) -> None:
    dev_hash = change_dev(git, gitops_repo, retrieval={"topK": 3})
    run_id = runs.log(experiment=EXPERIMENT, config_hash=dev_hash, metrics=GOOD, age=timedelta(hours=80))

    stale = promote(gitops_repo, "dev", "staging", uri=mlflow_uri)  # staging accepts up to 72h
    assert stale.exit_code == 1
    assert f"the latest evaluation run {run_id} is 80.0h old" in stale.output
    assert "up to 72.0h" in stale.output

    strict = promote(gitops_repo, "dev", "staging", "--dry-run", "--max-age-hours", "100", uri=mlflow_uri)
    assert strict.exit_code == 0 and "dry run: would promote" in strict.output


def test_the_latest_run_decides(git: Any, gitops_repo: Path, runs: Any, mlflow_uri: str) -> None:
    dev_hash = change_dev(git, gitops_repo, orchestration={"maxSteps": 5})
    runs.log(experiment=EXPERIMENT, config_hash=dev_hash, metrics=GOOD, age=timedelta(hours=5))
    runs.log(experiment=EXPERIMENT, config_hash=dev_hash, metrics={**GOOD, "latency_p95_ms": 5200.0},
             age=timedelta(hours=1))
    result = promote(gitops_repo, "dev", "staging", uri=mlflow_uri)
    assert result.exit_code == 1
    assert "latency_p95_ms = 5200 (needs <= 4000): FAILED" in result.output


def test_a_metric_the_run_did_not_log_fails_the_gate(git: Any, gitops_repo: Path, runs: Any,
                                                     mlflow_uri: str) -> None:
    dev_hash = change_dev(git, gitops_repo, orchestration={"maxSteps": 6})
    runs.log(experiment=EXPERIMENT, config_hash=dev_hash,
             metrics={k: v for k, v in GOOD.items() if k != "guardrail_accuracy"})
    result = promote(gitops_repo, "dev", "staging", uri=mlflow_uri)
    assert result.exit_code == 1
    assert "guardrail_accuracy = not logged (needs >= 0.95): FAILED" in result.output


def test_refused_on_a_dirty_working_tree(git: Any, gitops_repo: Path, runs: Any, mlflow_uri: str) -> None:
    dev_hash = change_dev(git, gitops_repo, retrieval={"topK": 5})
    runs.log(experiment=EXPERIMENT, config_hash=dev_hash, metrics=GOOD)
    (gitops_repo / "deploy" / "stages" / "dev" / "notes.txt").write_text("wip")
    head = git(gitops_repo, "rev-parse", "HEAD").strip()

    result = promote(gitops_repo, "dev", "staging", uri=mlflow_uri)

    assert result.exit_code == 2
    assert "uncommitted changes (deploy/stages/dev/notes.txt)" in result.output
    assert git(gitops_repo, "rev-parse", "HEAD").strip() == head


def test_dry_run_prints_the_diff_and_verdict_and_changes_nothing(
    git: Any, gitops_repo: Path, runs: Any, mlflow_uri: str
) -> None:
    dev_hash = change_dev(git, gitops_repo, **NEW_BEHAVIOUR)
    runs.log(experiment=EXPERIMENT, config_hash=dev_hash, metrics=GOOD)
    files = {p: p.read_bytes() for p in (gitops_repo / "deploy").rglob("*") if p.is_file()}
    head = git(gitops_repo, "rev-parse", "HEAD").strip()

    result = promote(gitops_repo, "dev", "staging", "--dry-run", uri=mlflow_uri)

    assert result.exit_code == 0, result.output
    assert "~ retrieval.topK: 6 -> 8" in result.output
    assert "! re-ingestion needed in staging: embedder changed" in result.output
    assert "--- stages/staging/promoted.yaml (would be written)" in result.output
    assert "path: /spec/model/name" in result.output
    assert "dry run: would promote dev -> staging" in result.output
    assert git(gitops_repo, "rev-parse", "HEAD").strip() == head
    assert {p: p.read_bytes() for p in (gitops_repo / "deploy").rglob("*") if p.is_file()} == files


def test_bad_invocations_say_what_to_do(git: Any, gitops_repo: Path, mlflow_uri: str) -> None:
    unknown = promote(gitops_repo, "dev", "qa", uri=mlflow_uri)
    assert unknown.exit_code == 2
    assert "no stage 'qa'" in unknown.output and "dev, prod, staging" in unknown.output
    same = promote(gitops_repo, "dev", "dev", uri=mlflow_uri)
    assert same.exit_code == 2 and "both 'dev'" in same.output
    change_dev(git, gitops_repo, model={"name": "Qwen/Qwen2.5-0.5B-Instruct"})
    no_uri = promote(gitops_repo, "dev", "staging", uri=None)  # the example uses a managed MLflow
    assert no_uri.exit_code == 2 and "pass --tracking-uri" in no_uri.output


@pytest.mark.parametrize(("uri", "reason"), [
    (f"http://127.0.0.1:{free_port()}", "connection refused"),  # nothing listens there
    ("http://mlflow.no-such-host.invalid:5000", "host 'mlflow.no-such-host.invalid' not found"),
], ids=["refused", "unresolvable"])
def test_an_unreachable_tracking_server_fails_fast_naming_the_flag(
    git: Any, gitops_repo: Path, uri: str, reason: str
) -> None:
    """MLflow's client retried these with backoff for over 4 minutes, printing nothing."""
    change_dev(git, gitops_repo, model={"name": "Qwen/Qwen2.5-0.5B-Instruct"})
    done = subprocess.run(
        [sys.executable, "-m", "aistack.cli", "promote", "dev", "staging", "--repo",
         str(gitops_repo / "deploy"),
         "--tracking-uri", uri], capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert (f"cannot promote dev -> staging: cannot reach the MLflow tracking server at {uri}: {reason}"
            in done.stderr), done.stderr
    assert done.stderr.rstrip().endswith("; check --tracking-uri")
    assert "Traceback" not in done.stderr


def test_not_a_git_repository(tmp_path: Path, stack_file: Path, mlflow_uri: str) -> None:
    from aistack.cli.promotion.layout import load_stack_doc, scaffold

    scaffold(root=tmp_path / "deploy", stack_doc=load_stack_doc(stack_file), stages=["dev", "prod"])
    result = CliRunner().invoke(app, ["promote", "dev", "prod", "--repo", str(tmp_path / "deploy"),
                                      "--tracking-uri", mlflow_uri])
    assert result.exit_code == 2 and "not inside a git repository" in result.output


def test_the_installed_command_promotes(git: Any, gitops_repo: Path, runs: Any, mlflow_uri: str) -> None:
    """Once as a user runs it: a separate process with its own exit code."""
    dev_hash = change_dev(git, gitops_repo, guardrails={"maxInputChars": 4000})
    runs.log(experiment=EXPERIMENT, config_hash=dev_hash, metrics=GOOD)
    done = subprocess.run(
        [sys.executable, "-m", "aistack.cli", "promote", "dev", "staging", "--repo",
         str(gitops_repo / "deploy"),
         "--tracking-uri", mlflow_uri], capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert config_hash(stage(gitops_repo, "staging")[1].spec) == dev_hash
    assert stage(gitops_repo, "staging")[1].spec.guardrails.max_input_chars == 4000


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
