"""One reconcile with a recording client: invalid specs touch no child, a stack being
deleted is left to the finalizer, cleanup obeys deletionPolicy."""

from __future__ import annotations

import copy
from typing import Any

from qdrant_client import QdrantClient, models

from aistack.operator.reconcile import finalize, reconcile


class RecordingKube:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __getattr__(self, verb: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((verb, args))
            return {"items": []} if verb == "list" else {}

        return call


def body(make_stack, name: str, **edits: Any) -> dict[str, Any]:
    doc = make_stack(name, uid="u1").model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["metadata"]["generation"] = 4
    doc["spec"] = make_stack(name).spec.to_wire()
    doc.update(copy.deepcopy(edits))
    return doc


def test_invalid_spec_writes_only_status(make_stack) -> None:
    kube = RecordingKube()
    bad = body(make_stack, "quickstart")
    bad["spec"]["model"]["provider"] = "tgi"
    outcome = reconcile(bad, kube=kube, qdrant=lambda *_: None, version="v", live={}, now=lambda: "T")
    assert [c[0] for c in kube.calls] == ["patch"]
    status = kube.calls[0][1][3]["status"]
    assert status["phase"] == "Failed" and status["observedGeneration"] == 4
    assert status["conditions"][0]["reason"] == "InvalidSpec"
    assert "spec.model.provider" in status["conditions"][0]["message"]
    assert outcome.events[0][:2] == ("Warning", "InvalidSpec")
    # The same invalid spec again: no write, no second Event.
    again = reconcile(bad, kube=kube, qdrant=lambda *_: None, version="v", live={},
                      known_status=outcome.status,
                      now=lambda: "T2")
    assert len(kube.calls) == 1 and again.events == []


def test_stack_being_deleted_is_left_alone(make_stack) -> None:
    kube = RecordingKube()
    deleting = body(make_stack, "quickstart")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert reconcile(deleting, kube=kube, qdrant=lambda *_: None, version="v", live={}).writes == 0
    assert kube.calls == []


def test_finalize_obeys_deletion_policy(make_stack) -> None:
    client = QdrantClient(":memory:")
    client.create_collection("docs",
                             vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE))
    retain = body(make_stack, "rag")
    assert "retained" in finalize(retain, kube=RecordingKube(), qdrant=lambda *_: client, version="v")
    assert client.collection_exists("docs")
    delete = body(make_stack, "rag")
    delete["spec"]["retrieval"]["collection"]["deletionPolicy"] = "Delete"
    assert "deleted" in finalize(delete, kube=RecordingKube(), qdrant=lambda *_: client, version="v")
    assert not client.collection_exists("docs")
    assert "already gone" in finalize(delete, kube=RecordingKube(), qdrant=lambda *_: client, version="v")


def test_the_evaluation_job_waits_for_a_gateway_that_serves_this_render(make_stack) -> None:
    """The Job is applied once the gateway Deployment holds this render and is available; one
    already created stays when the gateway has a bad moment."""
    from aistack.operator.apply import with_last_applied
    from aistack.operator.reconcile import parse_and_render, stack_document

    doc = body(make_stack, "production")
    rendered = parse_and_render(stack_document(doc), "v")
    job, gateway = rendered.evaluation_job, rendered.gateway
    assert job is not None and rendered.ingestion_job is not None

    def run(live: dict[Any, Any]) -> Any:
        return reconcile(doc, kube=RecordingKube(), qdrant=lambda *_: None, version="v", live=live,
                         now=lambda: "T").applied

    first = run({})
    assert job not in first.created and rendered.ingestion_job in first.created
    serving = {**with_last_applied(rendered.manifest(gateway)), "status": {"availableReplicas": 1}}
    assert job in run({gateway: serving}).created
    previous = body(make_stack, "production")
    previous["spec"]["orchestration"]["systemPrompt"] = "Be brief."  # the config before this one
    still_old = parse_and_render(stack_document(previous), "v").manifest(gateway)
    assert job not in run({gateway: {**with_last_applied(still_old),
                                     "status": {"availableReplicas": 1}}}).created
    kept = run({job: with_last_applied(rendered.manifest(job))})
    assert job in kept.live and job not in kept.deleted
