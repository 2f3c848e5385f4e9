"""One reconcile of one AIStack: parse, render, apply, check the collection, write status.

Synchronous and free of kopf, so it can run in a worker thread and be tested directly; the
kopf handlers only decide *when* it runs. What it cannot finish it reports in `Outcome`
(retry, events) instead of raising deep inside kopf.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aistack.api.manifests import ManifestError, parse_stack
from aistack.api.v1alpha1 import AIStack
from aistack.operator import collection, status
from aistack.operator.apply import ApplyResult, ChildKey, apply_children, fetch_children
from aistack.operator.collection import QdrantFactory
from aistack.operator.kube import AISTACK, ApiError, Kube
from aistack.operator.naming import child_name
from aistack.operator.render import RenderContext, render
from aistack.operator.render.gateway import endpoint

log = logging.getLogger("aistack.operator")


@dataclass
class Outcome:
    """What a reconcile did and what the caller should do next."""

    applied: ApplyResult | None = None
    status_written: bool = False
    status: dict[str, Any] = field(default_factory=dict)
    """The status the stack now has (the operator's owned keys)."""
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type, reason, message) to post as Kubernetes Events."""
    retry: str | None = None
    """Why to run again soon (a layer is still starting, Qdrant unreachable...)."""

    @property
    def writes(self) -> int:
        return (self.applied.writes if self.applied else 0) + int(self.status_written)


def utc_now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def stack_document(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a live object that the AIStack model validates (status and server-set
    metadata left out)."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "annotations", "uid", "generation")
                     if meta.get(k) is not None},
        "spec": body.get("spec"),
    }


def reconcile(body: Mapping[str, Any], *, kube: Kube, qdrant: QdrantFactory, version: str,
              live: Mapping[ChildKey, Mapping[str, Any]] | None = None,
              known_status: Mapping[str, Any] | None = None, now: Callable[[], str] = utc_now) -> Outcome:
    """Converge the children of `body` and write its status.

    `live` is a watch cache of its children (listed from the API server when None);
    `known_status` is the status this process last wrote, fresher than a cached body's.
    """
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return Outcome()  # being deleted: the finalizer and garbage collection take over
    name, namespace = meta.get("name", ""), meta.get("namespace") or "default"
    generation = meta.get("generation")
    previous = known_status if known_status is not None else (body.get("status") or {})
    try:
        stack = parse_stack(stack_document(body), source=f"{namespace}/{name}")
    except ManifestError as err:
        message = "; ".join(str(e) for e in err.errors)
        new = status.invalid_status(generation=generation, message=message, previous=previous, now=now())
        outcome = Outcome(status_written=_write_status(kube, namespace, name, new, previous), status=new)
        if outcome.status_written:
            outcome.events.append(("Warning", "InvalidSpec", message[:1000]))
        return outcome

    desired = render(stack, version=version)
    if live is None:
        live = fetch_children(kube, name=name, namespace=namespace)
    applied = apply_children(kube, namespace=namespace, desired=desired, live=live, owner_uid=stack.metadata.uid)
    outcome = Outcome(applied=applied)
    for key, message in applied.failed.items():
        outcome.events.append(("Warning", "ApplyFailed", f"{key[0]} {key[1]}: {message}"[:1000]))
    collection_check = _collection(stack, kube=kube, qdrant=qdrant, version=version, live=applied.live, outcome=outcome)
    checks = status.layer_checks(stack, applied.live, collection=collection_check, failed=applied.failed)
    gateway = applied.live.get(("Deployment", child_name(name, "gateway"))) or {}
    new = status.build_status(
        stack, generation=generation, checks=checks, endpoint=endpoint(RenderContext(stack=stack, version=version)),
        gateway_ready_replicas=int((gateway.get("status") or {}).get("availableReplicas") or 0),
        previous=previous, now=now(),
    )
    outcome.status_written = _write_status(kube, namespace, name, new, previous)
    outcome.status = new
    if outcome.status_written and collection_check is not None and collection_check.reason == "CollectionMismatch":
        old = {c.get("type"): c.get("reason") for c in previous.get("conditions") or []}
        if old.get("RetrievalReady") != "CollectionMismatch":
            outcome.events.append(("Warning", "CollectionMismatch", collection_check.message))
    return outcome


def _collection(stack: AIStack, *, kube: Kube, qdrant: QdrantFactory, version: str,
                live: Mapping[ChildKey, Mapping[str, Any]], outcome: Outcome) -> status.Check | None:
    """Check the collection once its Qdrant is up; None when the stack has no retrieval."""
    if stack.spec.retrieval is None:
        return None
    if stack.spec.retrieval.vector_store.managed is not None:
        store = status.workload_check(live, "StatefulSet", child_name(stack.name, "vector-store"))
        if not store.ok:
            return None  # layer_checks reports the StatefulSet's progress
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        client = collection.connect(stack, kube=kube, factory=qdrant, version=version)
        return collection.ensure_collection(client, stack)
    except (ResponseHandlingException, UnexpectedResponse, OSError, ApiError) as err:
        outcome.retry = f"Qdrant: {err}"
        return status.Check(ok=False, reason="VectorStoreUnreachable", message=str(err)[:500])


def _write_status(kube: Kube, namespace: str, name: str, new: Mapping[str, Any],
                  previous: Mapping[str, Any]) -> bool:
    patch = status.status_patch(new, previous)
    if patch is None:
        return False
    kube.patch(AISTACK, namespace, name, {"status": patch}, subresource="status")
    return True


def finalize(body: Mapping[str, Any], *, kube: Kube, qdrant: QdrantFactory, version: str) -> str:
    """On deletion: drop the collection only under `deletionPolicy: Delete`; say what happened."""
    try:
        stack: AIStack = parse_stack(stack_document(body))
    except ManifestError:
        return "invalid spec: nothing to clean up"
    retrieval = stack.spec.retrieval
    if retrieval is None:
        return "no retrieval layer"
    name = collection.collection_name(stack)
    if retrieval.collection.deletion_policy != "Delete":
        return f"collection {name!r} retained (deletionPolicy Retain)"
    client = collection.connect(stack, kube=kube, factory=qdrant, version=version)
    deleted = collection.delete_collection(client, stack)
    return f"collection {name!r} deleted" if deleted else f"collection {name!r} was already gone"
