"""The model cache's pull Job on the emulator: the model's Deployment is created only once the Job has
pulled the weights (ModelReady Downloading, then Cached, then ready), a failed pull says why
(DownloadFailed, with the Job's log command), and a new model leaves the old Deployment serving
until its own pull has finished."""

from __future__ import annotations

from typing import Any

import pytest

from aistack.api.model_cache import PullExit
from aistack.operator.kube import AISTACK
from aistack.testing.cluster import Cluster, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")
NAME = "support-copilot"
MODEL = ("Deployment", f"{NAME}-model")


def shared_cache(stack_doc: Any, namespace: str) -> dict[str, Any]:
    doc = stack_doc("production", namespace)
    doc["spec"]["model"]["vllm"]["cache"] = {"size": "60Gi", "storageClassName": "efs",
                                             "accessMode": "ReadWriteMany", "prePull": True}
    return doc


def pull_jobs(cluster: Cluster, namespace: str) -> list[str]:
    return sorted(name for (kind, name), obj in cluster.children(namespace, NAME).items()
                  if kind == "Job"
                  and obj["metadata"]["labels"]["app.kubernetes.io/component"] == "model-cache")


def model_ready(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return cluster.condition(namespace, NAME, "ModelReady") or {}


def test_the_model_starts_after_its_pull_and_a_new_model_waits_for_its_own(cluster, operator, namespace,
                                                                           stack_doc) -> None:
    cluster.apply_stack(shared_cache(stack_doc, namespace))
    [first] = wait_for(lambda: pull_jobs(cluster, namespace), what="the pull Job")
    downloading = wait_for(lambda: (c := model_ready(cluster, namespace)).get("reason") == "Downloading"
                           and c, what="ModelReady Downloading")
    assert f"kubectl logs job/{first} -n {namespace}" in downloading["message"]
    children = cluster.children(namespace, NAME)
    assert MODEL not in children  # no GPU pod waits on the download
    assert ("PersistentVolumeClaim", f"{NAME}-model-cache") in children
    assert ("Deployment", f"{NAME}-gateway") in children  # the other layers do not wait
    job = children[("Job", first)]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:3] == ["engine", "pull",
                                                                            "Qwen/Qwen2.5-7B-Instruct"]

    cluster.thread.call(cluster.emulator.finish_job, namespace, first, PullExit.CACHED)
    model = wait_for(lambda: cluster.children(namespace, NAME).get(MODEL), what="the model's Deployment")
    args = model["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["--model", "/model-cache/models/Qwen--Qwen2.5-7B-Instruct"]
    stack = cluster.wait_phase(namespace, NAME, "Ready")
    assert {c["type"]: c["status"] for c in stack["status"]["conditions"]}["ModelReady"] == "True"

    # a new model: its own pull, the old Deployment left serving the old model meanwhile
    cluster.kube.patch(AISTACK, namespace, NAME, {"spec": {"model": {"name": "Qwen/Qwen2.5-14B-Instruct"}}})
    [second] = wait_for(lambda: (n := pull_jobs(cluster, namespace)) != [first] and len(n) == 1 and n,
                        what="the new model's pull Job, the old one pruned")
    wait_for(lambda: model_ready(cluster, namespace).get("reason") == "Downloading", what="Downloading again")
    held = cluster.children(namespace, NAME)[MODEL]
    assert held["spec"]["template"]["spec"]["containers"][0]["args"][1].endswith("Qwen--Qwen2.5-7B-Instruct")

    cluster.thread.call(cluster.emulator.finish_job, namespace, second, PullExit.TOO_SMALL)
    failed = wait_for(lambda: (c := model_ready(cluster, namespace)).get("reason") == "DownloadFailed" and c,
                      what="ModelReady DownloadFailed")
    assert "does not fit in the cache volume: raise model.vllm.cache.size" in failed["message"]
    assert f"kubectl logs job/{second} -n {namespace}" in failed["message"]
    still = cluster.children(namespace, NAME)[MODEL]
    assert still["spec"]["template"]["spec"]["containers"][0]["args"][1].endswith("Qwen--Qwen2.5-7B-Instruct")

    # a bigger cache is a new pull; once it is done the Deployment moves to the new model
    cluster.kube.patch(AISTACK, namespace, NAME, {"spec": {"model": {"vllm": {"cache": {"size": "120Gi"}}}}})
    [third] = wait_for(lambda: (n := pull_jobs(cluster, namespace)) != [second] and len(n) == 1 and n,
                       what="a new pull for the bigger cache")
    cluster.thread.call(cluster.emulator.finish_job, namespace, third, PullExit.CACHED)
    wait_for(lambda: cluster.children(namespace, NAME)[MODEL]["spec"]["template"]["spec"]["containers"][0][
        "args"][1].endswith("Qwen--Qwen2.5-14B-Instruct"), what="the Deployment on the new model")
