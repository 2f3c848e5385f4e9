"""The README's GitOps section, followed as written from a fresh scaffold: three stages in three
namespaces, the config hash read from `aistack validate -` / `render --config-hash -`, an evaluation
run logged under it without `aistack eval`, and a gated promotion dev -> staging (refused without
the run, committed with it; staging keeps its namespace)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[4]
STAGES = ("dev", "staging", "prod")


def sh(*args: str, cwd: Path, stdin: str | None = None,
       check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(list(args), cwd=cwd, input=stdin, capture_output=True, text=True, env=env,
                          timeout=300)
    assert not check or done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def aistack(*args: str, cwd: Path, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh(sys.executable, "-m", "aistack.cli", *args, cwd=cwd, stdin=stdin, check=check)


def log_evaluation_run(uri: str, *, experiment: str, config_hash: str, metrics: dict[str, float]) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    artifacts = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"  # not ./mlruns in the cwd
    experiment_id = found.experiment_id if found else client.create_experiment(
        experiment, artifact_location=artifacts.as_uri())
    run = client.create_run(experiment_id, tags={"aistack.run_kind": "evaluation",
                                                 "aistack.config_hash": config_hash})
    for name, value in metrics.items():
        client.log_metric(run.info.run_id, name, value)
    client.set_terminated(run.info.run_id, "FINISHED")


def test_the_readme_gitops_section_end_to_end(tmp_path: Path, kubectl: str) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    sh("git", "init", "-q", cwd=repo)
    (repo / "stack.yaml").write_text((ROOT / "examples" / "production.yaml").read_text())
    aistack("init-gitops", "deploy", "--from", "stack.yaml", cwd=repo)
    sh("git", "add", "deploy", "stack.yaml", cwd=repo)
    sh("git", "commit", "-qm", "aistack stages", cwd=repo)

    rendered = {s: sh(kubectl, "kustomize", f"deploy/stages/{s}", cwd=repo).stdout for s in STAGES}
    placed = {s: yaml.safe_load(text)["metadata"]["namespace"] for s, text in rendered.items()}
    assert placed == {"dev": "ai-dev", "staging": "ai-staging", "prod": "ai-prod"}
    checked = aistack("validate", "-", cwd=repo, stdin=rendered["prod"]).stdout
    assert "config hash " in checked and "1 AIStack(s) valid" in checked

    # Change behaviour in dev's stage.yaml (a tool's description), commit; read dev's new hash.
    dev_patch = repo / "deploy" / "stages" / "dev" / "stage.yaml"
    base = yaml.safe_load((repo / "deploy" / "base" / "aistack.yaml").read_text())
    tools = base["spec"]["orchestration"]["tools"]
    tools[0]["description"] = "Look up the status and delivery date of an order by its id."
    patch = yaml.safe_load(dev_patch.read_text())
    patch["spec"]["orchestration"] = {"tools": tools}
    dev_patch.write_text(yaml.safe_dump(patch, sort_keys=False))
    sh("git", "commit", "-qam", "dev: a better tool description", cwd=repo)
    dev = sh(kubectl, "kustomize", "deploy/stages/dev", cwd=repo).stdout
    dev_hash = aistack("render", "--config-hash", "-", cwd=repo, stdin=dev).stdout.strip()
    assert (f"config hash {dev_hash}: support-copilot (stage dev, <stdin>[0])"
            in aistack("validate", "-", cwd=repo, stdin=dev).stdout)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    promote = ("promote", "dev", "staging", "--repo", "deploy", "--tracking-uri", uri)
    refused = aistack(*promote, cwd=repo, check=False)
    assert refused.returncode == 1 and f"no evaluation run for config hash {dev_hash}" in refused.stderr
    # production.yaml names its experiment; promote looks there (FROM's and TO's experiments).
    log_evaluation_run(uri, experiment="support-copilot", config_hash=dev_hash,
                       metrics={"retrieval_hit_rate": 0.9, "answer_token_f1": 0.6, "guardrail_accuracy": 0.97,
                                "latency_p95_ms": 2100})
    dry = aistack(*promote, "--dry-run", cwd=repo)
    assert ("orchestration.tools[order_status].description: 'Look up the status of an order by its id.' -> "
            in dry.stdout)
    assert "dry run: would promote dev -> staging" in dry.stdout
    promoted = aistack(*promote, cwd=repo)
    assert "promoted dev -> staging: commit" in promoted.stdout

    after = {s: sh(kubectl, "kustomize", f"deploy/stages/{s}", cwd=repo).stdout for s in STAGES}
    hashes = {s: aistack("render", "--config-hash", "-", cwd=repo, stdin=text).stdout.strip()
              for s, text in after.items()}
    assert hashes["staging"] == hashes["dev"] == dev_hash != hashes["prod"]
    assert {s: yaml.safe_load(text)["metadata"]["namespace"] for s, text in after.items()} == placed
    assert sh("git", "status", "--porcelain", cwd=repo).stdout == ""
