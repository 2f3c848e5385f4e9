"""The ingestion and evaluation Jobs end to end: the evaluation Job waits for a gateway that
serves the current config, one Job per config, and `status.evaluation` / `status.ingestion`
follow the Jobs' ends (the emulator's Job controller is told the pod's exit code)."""

from __future__ import annotations

from typing import Any

import pytest

from aistack.api.commands import EvalExit, IngestExit
from aistack.operator.kube import AISTACK
from aistack.testing.cluster import Cluster, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")
NAME = "support-copilot"


def job_names(cluster: Cluster, namespace: str, component: str) -> list[str]:
    return sorted(name for (kind, name), obj in cluster.children(namespace, NAME).items()
                  if kind == "Job" and obj["metadata"]["labels"]["app.kubernetes.io/component"] == component)


def evaluation(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    return ((cluster.stack(namespace, NAME) or {}).get("status") or {}).get("evaluation")


def test_evaluation_job_follows_gateway_and_config_and_reports_its_verdict(cluster, operator, namespace,
                                                                          stack_doc) -> None:
    cluster.emulator.kubelet_ready = False
    try:
        cluster.apply_stack(stack_doc("production", namespace))
        cluster.wait_phase(namespace, NAME, "Progressing")
        ingest = wait_for(lambda: job_names(cluster, namespace, "ingestion"), what="ingestion Job")
        assert len(ingest) == 1
        assert cluster.emulator.find("configmaps", namespace, f"{NAME}-manifest") is not None
        assert job_names(cluster, namespace, "evaluation") == []  # the gateway is not ready
    finally:
        cluster.emulator.kubelet_ready = True
        cluster.thread.call(cluster.emulator.report_all)
    stack = cluster.wait_phase(namespace, NAME, "Ready")
    first_hash = stack["status"]["configHash"]
    [first] = wait_for(lambda: job_names(cluster, namespace, "evaluation"), what="evaluation Job")
    assert evaluation(cluster, namespace) is None  # not finished yet

    cluster.thread.call(cluster.emulator.finish_job, namespace, first, EvalExit.FAILED)
    assert wait_for(lambda: evaluation(cluster, namespace), what="status.evaluation") == {
        "configHash": first_hash, "verdict": "Failed"}

    # a new prompt is a new config: a new Job once the gateway rolled out, the old one pruned
    cluster.kube.patch(AISTACK, namespace, NAME, {"spec": {"orchestration": {"systemPrompt": "Be brief."}}})
    [second] = wait_for(lambda: len(names := job_names(cluster, namespace, "evaluation")) == 1
                        and names != [first]
                        and names, what="the new config's evaluation Job, the old one pruned", timeout=15)
    new_hash = cluster.stack(namespace, NAME)["status"]["configHash"]
    assert new_hash != first_hash
    assert job_names(cluster, namespace, "ingestion") == ingest  # retrieval did not change
    assert evaluation(cluster, namespace) == {"configHash": first_hash, "verdict": "Failed"}  # the last one

    cluster.thread.call(cluster.emulator.finish_job, namespace, second, EvalExit.PASSED)
    assert wait_for(lambda: (e := evaluation(cluster, namespace)) and e["configHash"] == new_hash and e,
                    what="status.evaluation of the new config") == {"configHash": new_hash,
                                                                    "verdict": "Passed"}


def ingestion(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    return ((cluster.stack(namespace, NAME) or {}).get("status") or {}).get("ingestion")


def test_ingestion_status_follows_the_job_and_a_failure_is_an_event(cluster, operator, namespace,
                                                                    stack_doc) -> None:
    cluster.apply_stack(stack_doc("production", namespace))
    [first] = wait_for(lambda: job_names(cluster, namespace, "ingestion"), what="ingestion Job")
    assert wait_for(lambda: (i := ingestion(cluster, namespace)) and i["phase"] == "Running" and i,
                    what="ingestion Running")["job"] == first
    cluster.thread.call(cluster.emulator.finish_job, namespace, first, IngestExit.SKIPPED)  # no retry
    failed = wait_for(lambda: (i := ingestion(cluster, namespace)) and i["phase"] == "Failed" and i,
                      what="ingestion Failed")
    assert failed["message"].startswith("some documents could not be read and were skipped")
    assert f"kubectl logs job/{first}" in failed["message"]
    events = wait_for(lambda: cluster.events(namespace, "IngestionFailed"), what="IngestionFailed event")
    assert len(events) == 1, [(e["message"], e["metadata"]["name"], e.get("firstTimestamp")) for e in events]
    [event] = events
    assert first in event["message"], [e["message"] for e in cluster.events(namespace, "IngestionFailed")]

    # new sources: a new Job, Running again; the store never came up: failed after the retries
    cluster.kube.patch(AISTACK, namespace, NAME,
                       {"spec": {"retrieval": {"sources": [{"uri": "s3://acme/new/"}]}}})
    [second] = wait_for(lambda: len(n := job_names(cluster, namespace, "ingestion")) == 1 and n != [first]
                        and n,
                        what="the new sources' Job, the old one pruned")
    wait_for(lambda: (i := ingestion(cluster, namespace)) and i == {
        "job": second, "phase": "Running", "message": "ingesting (retried while the store starts)"},
        what="the new Job Running")
    cluster.thread.call(cluster.emulator.finish_job, namespace, second, IngestExit.UNAVAILABLE)
    failed = wait_for(lambda: (i := ingestion(cluster, namespace)) and i["phase"] == "Failed" and i,
                      what="ingestion Failed after retries")
    assert failed["message"].startswith("BackoffLimitExceeded: Job has reached the specified backoff limit")
    wait_for(lambda: len(cluster.events(namespace, "IngestionFailed")) == 2,
             what="a second IngestionFailed event")

    # sources fixed: Succeeded, and a no-op resync writes nothing more
    cluster.kube.patch(AISTACK, namespace, NAME,
                       {"spec": {"retrieval": {"sources": [{"uri": "s3://acme/kb/"}]}}})
    [third] = wait_for(lambda: len(n := job_names(cluster, namespace, "ingestion")) == 1 and n != [second]
                       and n,
                       what="the third Job, the second one pruned")
    cluster.thread.call(cluster.emulator.finish_job, namespace, third, IngestExit.INGESTED)
    assert wait_for(lambda: (i := ingestion(cluster, namespace)) and i["phase"] == "Succeeded" and i,
                    what="ingestion Succeeded") == {"job": third, "phase": "Succeeded",
                                                    "message": "every document ingested"}
