"""The ingestion and evaluation Jobs: when they render, what they run, what names them, and
how a finished evaluation Job becomes `status.evaluation`."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from aistack.api.config_hash import config_hash
from aistack.api.conventions import CONFIG_HASH_ANNOTATION
from aistack.api.manifests import parse_stack
from aistack.api.v1alpha1 import AIStack
from aistack.operator.render import render
from aistack.operator.render.jobs import local_only_sources
from aistack.operator.status import evaluation_status

VERSION = "9.9.9"
CMREF_DATASET = {"spec": {"evaluation": {"dataset": {"path": None,
                                                     "configMapKeyRef": {"name": "qa", "key": "q.jsonl"}}}}}


def jobs(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Jobs by component (`ingestion`, `evaluation`)."""
    return {m["metadata"]["labels"]["app.kubernetes.io/component"]: m for m in manifests
            if m["kind"] == "Job"}


def container(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


def job_name(stack: AIStack, component: str) -> str:
    return jobs(render(stack, version=VERSION).manifests)[component]["metadata"]["name"]


def test_ingestion_job_runs_ingest_against_the_managed_qdrant(make_stack) -> None:
    manifests = render(make_stack("rag"), version=VERSION).manifests
    job = jobs(manifests)["ingestion"]
    assert job["metadata"]["name"].startswith("docs-assistant-ingest-")
    c = container(job)
    assert c["command"] == ["python", "-m", "aistack.cli"]
    assert c["image"] == f"ghcr.io/aistack-dev/runtime:{VERSION}"
    assert c["args"] == ["ingest", "/etc/aistack/manifest/aistack.yaml", "--qdrant-url",
                         "http://docs-assistant-vector-store.default.svc.cluster.local:6333", "--state",
                         "/tmp/aistack",
                         "--base", "/sources"]
    # what the Job reads is the stack itself: the ConfigMap parses back to the same spec
    cm = next(m for m in manifests if m["metadata"]["name"] == "docs-assistant-manifest")
    assert parse_stack(yaml.safe_load(cm["data"]["aistack.yaml"])).spec == make_stack("rag").spec
    assert {"name": "manifest", "mountPath": "/etc/aistack/manifest", "readOnly": True} in c["volumeMounts"]
    # the `docs` folder, from its ConfigMap, where `--base` finds it: the same names as locally
    assert {"name": "source-0", "mountPath": "/sources/docs", "readOnly": True} in c["volumeMounts"]
    assert {"name": "source-0",
            "configMap": {"name": "aistack-docs"}} in job["spec"]["template"]["spec"]["volumes"]


def test_a_path_without_a_volume_is_left_to_local_runs(make_stack) -> None:
    """The cluster cannot read a laptop's folder: such a source is left out of the Job (and
    said in the RetrievalReady condition); a claim is mounted read-only."""
    mixed = make_stack("rag", {"spec": {"retrieval": {"sources": [
        {"uri": "docs"}, {"uri": "s3://bucket/kb/"},
        {"uri": "handbook/", "volume": {"persistentVolumeClaim": "kb"}}]}}})
    manifests = render(mixed, version=VERSION).manifests
    job = jobs(manifests)["ingestion"]
    cm = next(m for m in manifests if m["metadata"]["name"] == "docs-assistant-manifest")
    sources = yaml.safe_load(cm["data"]["aistack.yaml"])["spec"]["retrieval"]["sources"]
    assert [s["uri"] for s in sources] == ["s3://bucket/kb/", "handbook/"]
    pod = job["spec"]["template"]["spec"]
    assert {"name": "source-1",
            "persistentVolumeClaim": {"claimName": "kb", "readOnly": True}} in pod["volumes"]
    assert {"name": "source-1",
            "mountPath": "/sources/handbook", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert local_only_sources(mixed) == ["docs"]
    # what status and `aistack render` name
    assert render(mixed, version=VERSION).local_only_sources == ("docs",)
    only_local = make_stack("rag", {"spec": {"retrieval": {"sources": [{"uri": "docs"}]}}})
    assert "ingestion" not in jobs(render(only_local, version=VERSION).manifests)


@pytest.mark.parametrize("component", ["ingestion", "evaluation"])
def test_jobs_are_non_root_read_only_and_keep_no_server_defaults(make_stack, component: str) -> None:
    job = jobs(render(make_stack("production"), version=VERSION).manifests)[component]
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert "ttlSecondsAfterFinished" not in job["spec"] and "backoffLimit" not in job["spec"]


def test_no_sources_no_ingestion_and_no_evaluation_no_jobs(make_stack) -> None:
    no_sources = make_stack("rag", {"spec": {"retrieval": {"sources": []}}})
    assert "ingestion" not in jobs(render(no_sources, version=VERSION).manifests)
    manifests = render(make_stack("quickstart"), version=VERSION).manifests
    assert not jobs(manifests)
    assert not [m for m in manifests if m["metadata"]["name"].endswith("-manifest")]


def test_ingestion_job_name_follows_sources_and_retrieval_config_only(make_stack) -> None:
    base = job_name(make_stack("rag"), "ingestion")
    assert job_name(make_stack("rag"), "ingestion") == base  # deterministic
    for patch in ({"retrieval": {"sources": [{"uri": "s3://bucket/other/"}]}},
                  {"retrieval": {"chunking": {"size": 500, "overlap": 50}}},
                  {"retrieval": {"collection": {"name": "other"}}}):
        assert job_name(make_stack("rag", {"spec": patch}), "ingestion") != base, patch
    for patch in ({"gateway": {"replicas": 3}}, {"orchestration": {"systemPrompt": "Be brief."}}):
        assert job_name(make_stack("rag", {"spec": patch}), "ingestion") == base, patch


def test_evaluation_job_runs_eval_against_the_gateway_with_the_mounted_dataset(make_stack) -> None:
    stack = make_stack("production")
    job = jobs(render(stack, version=VERSION).manifests)["evaluation"]
    assert job["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] == config_hash(stack.spec)
    c = container(job)
    assert c["args"] == [
        "eval", "/etc/aistack/manifest/aistack.yaml", "/etc/aistack/dataset/dataset.jsonl",
        "--endpoint", "http://support-copilot-gateway.ai-prod.svc.cluster.local:8080/v1", "--state",
        "/tmp/aistack",
        "--tracking-uri", "http://support-copilot-mlflow.ai-prod.svc.cluster.local:5000",
        "--api-key-env", "AISTACK_SECRET_SUPPORT_COPILOT_KEYS_KEYS"]
    env = {e["name"]: e for e in c["env"]}
    assert env["AISTACK_SECRET_SUPPORT_COPILOT_KEYS_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "support-copilot-keys", "key": "keys"}
    volume = next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "dataset")
    assert volume["configMap"] == {"name": "support-copilot-eval",
                                   "items": [{"key": "dataset.jsonl", "path": "dataset.jsonl"}]}
    # exit code 1 (thresholds not met) and any other failure end the Job at once, no retries
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert [(r["action"], r["onExitCodes"]["operator"], r["onExitCodes"]["values"]) for r in rules] == [
        ("FailJob", "In", [1]), ("FailJob", "NotIn", [0, 1])]


def test_evaluation_job_with_external_mlflow_and_an_open_gateway(make_stack) -> None:
    stack = make_stack("rag", {"spec": {**CMREF_DATASET["spec"], "observability": {"mlflow": {
        "managed": None, "external": {"trackingUri": "https://mlflow.example.com",
                                      "tokenSecretRef": {"name": "ml", "key": "tok"}}}}}})
    c = container(jobs(render(stack, version=VERSION).manifests)["evaluation"])
    assert c["args"][c["args"].index("--tracking-uri") + 1] == "https://mlflow.example.com"
    assert "--api-key-env" not in c["args"]  # no apiKeysSecretRef: the gateway is open
    env = {e["name"]: e for e in c["env"]}
    assert env["AISTACK_SECRET_ML_TOK"]["valueFrom"]["secretKeyRef"] == {"name": "ml", "key": "tok"}
    assert env["MLFLOW_TRACKING_TOKEN"]["value"] == "$(AISTACK_SECRET_ML_TOK)"


def test_a_path_dataset_renders_no_evaluation_job_and_the_render_names_each_job(make_stack) -> None:
    rag = render(make_stack("rag"), version=VERSION)
    assert "evaluation" not in jobs(rag.manifests) and rag.evaluation_job is None  # rag's dataset is a path
    rendered = render(make_stack("production"), version=VERSION)
    found = jobs(rendered.manifests)
    assert rendered.ingestion_job == ("Job", found["ingestion"]["metadata"]["name"])
    assert rendered.evaluation_job == ("Job", found["evaluation"]["metadata"]["name"])
    # what the reconciler applies while the gateway does not serve this config yet
    held_back = rendered.without(rendered.evaluation_job)
    assert "evaluation" not in jobs(held_back) and "ingestion" in jobs(held_back)
    assert [m for m in held_back if m["metadata"]["name"] == "support-copilot-manifest"]


def test_evaluation_job_name_follows_config_hash_and_thresholds_not_replicas(make_stack) -> None:
    base = job_name(make_stack("production"), "evaluation")
    for patch in ({"orchestration": {"systemPrompt": "Be brief."}},
                  {"evaluation": {"thresholds": {"answer_token_f1": {"min": 0.9}}}},
                  {"evaluation": {"dataset": {"configMapKeyRef": {"name": "other", "key": "d.jsonl"}}}}):
        assert job_name(make_stack("production", {"spec": patch}), "evaluation") != base, patch
    for patch in ({"gateway": {"autoscaling": None, "replicas": 5}}, {"model": {"vllm": {"replicas": 4}}}):
        assert job_name(make_stack("production", {"spec": patch}), "evaluation") == base, patch


def _job(*conditions: dict[str, str]) -> dict[str, Any]:
    return {"kind": "Job", "status": {"conditions": list(conditions)}}


@pytest.mark.parametrize(("condition", "verdict"), [
    ({"type": "Complete", "status": "True", "reason": "Completed"}, "Passed"),
    ({"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
      "message": "Container eval for pod ns/p failed with exit code 1 matching FailJob rule at index 0"},
     "Failed"),
    ({"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
      "message": "Container eval for pod ns/p failed with exit code 2 matching FailJob rule at index 1"},
     "Error"),
    ({"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "exit code 1"}, "Error"),
    ({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": ""}, "Error"),
])
def test_evaluation_verdict_from_the_finished_job(condition: dict[str, str], verdict: str) -> None:
    assert evaluation_status(_job(condition), config_hash="abc", previous={}) == {"configHash": "abc",
                                                                                  "verdict": verdict}


def test_unfinished_or_missing_job_keeps_the_last_evaluation() -> None:
    last = {"evaluation": {"configHash": "old", "verdict": "Passed"}}
    running = _job({"type": "Failed", "status": "False", "reason": "", "message": ""})
    assert evaluation_status(running, config_hash="new", previous=last) == last["evaluation"]
    assert evaluation_status(None, config_hash="new", previous=last) == last["evaluation"]
    assert evaluation_status(None, config_hash="new", previous={}) is None


def test_gateway_in_sync_only_when_live_holds_what_this_render_applies(make_stack) -> None:
    """What decides that the evaluation Job may start: the live gateway (a full object or the
    watch cache's summary) holds the current render, not the previous config's."""
    from aistack.operator.apply import in_sync, summarize, with_last_applied

    def gateway(stack: AIStack) -> dict[str, Any]:
        return next(m for m in render(stack, version=VERSION).manifests
                    if (m["kind"], m["metadata"]["name"]) == ("Deployment", "support-copilot-gateway"))

    current = gateway(make_stack("production"))
    live = {**with_last_applied(current), "status": {"availableReplicas": 2}}
    # server-side additions are fine
    live["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = "x"
    assert in_sync(live, current) and in_sync(summarize(live), current)
    changed = gateway(make_stack("production", {"spec": {"orchestration": {"systemPrompt": "Be brief."}}}))
    assert not in_sync(live, changed) and not in_sync(summarize(live), changed)
    assert not in_sync(None, current)
