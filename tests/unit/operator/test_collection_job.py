"""An external Qdrant's key never reaches the operator: its collection is created or checked
by a Job that holds the key (`aistack collection`), and the operator reads the Job's end."""

from __future__ import annotations

from typing import Any

import pytest

from aistack.api.commands import CollectionExit
from aistack.api.manifests import ManifestError
from aistack.operator.render import render
from aistack.api.conventions import CONDITION_RETRIEVAL
from aistack.operator.status import collection_check, layer_checks

EXTERNAL = {"spec": {"retrieval": {"vectorStore": {"managed": None, "external": {
    "url": "https://qdrant.example.com:6333", "apiKeySecretRef": {"name": "qd", "key": "api-key"}}}}}}


def test_a_keyed_external_qdrant_gets_a_collection_job_holding_the_key(make_stack) -> None:
    rendered = render(make_stack("rag", EXTERNAL))
    assert rendered.collection_job is not None
    job = rendered.manifest(rendered.collection_job)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == ["collection", "/etc/aistack/manifest/aistack.yaml"]
    assert {"name": "AISTACK_SECRET_QD_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "qd", "key": "api-key"}}} in container["env"]
    assert pod["automountServiceAccountToken"] is False
    assert job["spec"]["podFailurePolicy"]["rules"] == [{"action": "FailJob", "onExitCodes": {
        "containerName": "collection", "operator": "In", "values": [int(CollectionExit.MISMATCH)]}}]
    assert ("ConfigMap", "docs-assistant-manifest") in {(m["kind"], m["metadata"]["name"])
                                                        for m in rendered.manifests}
    renamed = render(make_stack("rag", {**EXTERNAL, "spec": {**EXTERNAL["spec"], "retrieval": {
        **EXTERNAL["spec"]["retrieval"], "collection": {"name": "other"}}}}))
    assert renamed.collection_job is not None and renamed.collection_job != rendered.collection_job


KEYLESS = {"spec": {"retrieval": {"vectorStore": {"managed": None, "external": {
    "url": "https://qdrant.example.com:6333"}}}}}


@pytest.mark.parametrize("patch", [None, KEYLESS], ids=["managed", "external without a key"])
def test_a_qdrant_the_operator_reaches_without_a_key_has_no_collection_job(make_stack, patch) -> None:
    rendered = render(make_stack("rag", patch))
    assert rendered.collection_job is None
    assert not [m for m in rendered.manifests if m["kind"] == "Job" and "-coll-" in m["metadata"]["name"]]


def test_delete_is_refused_for_a_collection_the_operator_holds_no_key_to(make_stack) -> None:
    with pytest.raises(ManifestError, match=r"spec\.retrieval\.collection\.deletionPolicy: Delete needs a "
                                            r"Qdrant the operator can reach without a key"):
        make_stack("rag", {"spec": {"retrieval": {**EXTERNAL["spec"]["retrieval"],
                                                  "collection": {"deletionPolicy": "Delete"}}}})


def _job(status: dict[str, Any] | None) -> dict[str, Any]:
    return {"status": status} if status else {}


@pytest.mark.parametrize(("status", "ok", "reason"), [
    (None, False, "CollectionPending"),
    ({"active": 1}, False, "CollectionPending"),
    ({"conditions": [{"type": "Complete", "status": "True"}]}, True, "CollectionReady"),
    ({"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
                      "message": "Container collection for pod ns/p failed with exit code 1 matching FailJob "
                                 "rule at index 0"}]}, False, "CollectionMismatch"),
    ({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                      "message": "Job has reached the specified backoff limit"}]}, False,
     "VectorStoreUnreachable"),
])
def test_retrieval_ready_follows_the_collection_job(make_stack, status, ok, reason) -> None:
    rendered = render(make_stack("rag", EXTERNAL))
    assert rendered.collection_job is not None
    live = {} if status is None else {rendered.collection_job: _job(status)}
    check = collection_check(rendered, live)
    assert (check.ok, check.reason) == (ok, reason)
    assert rendered.collection_job[1] in check.message



def test_a_refused_collection_job_is_reported_on_retrieval(make_stack) -> None:
    rendered = render(make_stack("rag", EXTERNAL))
    assert rendered.collection_job is not None
    checks = layer_checks(rendered, {}, collection=collection_check(rendered, {}),
                          failed={rendered.collection_job: "forbidden"})
    assert checks[CONDITION_RETRIEVAL].reason == "ApplyFailed"
    assert rendered.collection_job[1] in checks[CONDITION_RETRIEVAL].message
