"""One reconcile of one AIStack: parse, render, apply, check the collection, write status.

Synchronous and free of kopf, so it can run in a worker thread and be tested directly; the
kopf handlers only decide *when* it runs. What it cannot finish it reports in `Outcome`
(retry, events) instead of raising deep inside kopf.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aistack.api.collection import collection_spec
from aistack.api.config_hash import config_hash
from aistack.api.manifests import ManifestError, parse_stack
from aistack.operator import canary as canary_analysis
from aistack.operator.adapters import adapter_state
from aistack.operator import collection, status
from aistack.operator.autoscale import ScaleMemory, autoscale
from aistack.operator.apply import ApplyResult, ChildKey, apply_children, fetch_children, in_sync
from aistack.operator.check import Check
from aistack.operator.collection import QdrantFactory
from aistack.operator.kube import AISTACK, ApiError, Kube
from aistack.operator.render import Manifest, Rendered, render

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
    scale_memory: ScaleMemory | None = None
    """What the built-in autoscaler remembers for the next reconcile; None: the model does not
    autoscale here."""
    recheck_in: float | None = None
    """Seconds until the autoscaler wants to decide again though nothing changes (a pending
    scale-down, the idle window, a gateway's report going stale)."""

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


class Renderer(Protocol):
    """Validates and renders a stack document (`canary_weight`: the canary's weight in force)."""

    def __call__(self, document: dict[str, Any], version: str, *,
                 canary_weight: int | None = None) -> Rendered: ...


def document_key(document: Mapping[str, Any]) -> tuple[str, str]:
    """(namespace, name) of a stack document."""
    meta = document.get("metadata") or {}
    return meta.get("namespace") or "default", meta.get("name", "")


def parse_and_render(document: dict[str, Any], version: str, *,
                     canary_weight: int | None = None) -> Rendered:
    """The validated stack's render; raises `ManifestError` for an invalid spec."""
    return render(parse_stack(document, source="/".join(document_key(document))), version=version,
                  canary_weight=canary_weight)


class RenderMemo:
    """`parse_and_render` remembered for the stacks reconciled most recently.

    A stack is reconciled a few times while it converges (created, then each time its children
    report progress), and every drift check again, each time from the same spec: validating and
    rendering it is most of a reconcile's CPU. The memo holds the result per stack for as long as
    the document is unchanged, for the `size` stacks used last (a bound on memory: the result is
    about 75 KB per stack). Callers treat what it returns as read-only; apply copies before it
    writes. An invalid spec is not remembered (it is cheap to refuse again and rare).
    """

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[str, str], tuple[str, Rendered]] = OrderedDict()
        self.hits = self.misses = 0

    def __call__(self, document: dict[str, Any], version: str, *,
                 canary_weight: int | None = None) -> Rendered:
        key = document_key(document)
        fingerprint = f"{version}/{canary_weight}" + json.dumps(document, sort_keys=True,
                                                                separators=(",", ":"), default=str)
        entry = self.entries.get(key)
        if entry is not None and entry[0] == fingerprint:
            self.hits += 1
            self.entries.move_to_end(key)
            return entry[1]
        self.misses += 1
        rendered = parse_and_render(document, version, canary_weight=canary_weight)
        self.entries[key] = (fingerprint, rendered)
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return rendered

    def forget(self, key: tuple[str, str]) -> None:
        self.entries.pop(key, None)


def reconcile(body: Mapping[str, Any], *, kube: Kube, qdrant: QdrantFactory, version: str,
              live: Mapping[ChildKey, Mapping[str, Any]] | None = None,
              known_status: Mapping[str, Any] | None = None, now: Callable[[], str] = utc_now,
              renderer: Renderer = parse_and_render, scale_memory: ScaleMemory | None = None,
              clock: Callable[[], float] = time.time) -> Outcome:
    """Converge the children of `body` and write its status.

    `live` is a watch cache of its children (listed from the API server when None);
    `known_status` is the status this process last wrote, fresher than a cached body's;
    `renderer` validates and renders (a `RenderMemo` in the operator); `scale_memory` is what the
    built-in autoscaler returned last time (`Outcome.scale_memory`), `clock` its time (Unix
    seconds, as the gateways' reports carry).
    """
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return Outcome()  # being deleted: the finalizer and garbage collection take over
    name, namespace = meta.get("name", ""), meta.get("namespace") or "default"
    generation = meta.get("generation")
    previous = known_status if known_status is not None else (body.get("status") or {})
    in_force = ((previous.get("model") or {}).get("canary") or {}).get("weight")
    try:
        rendered = renderer(stack_document(body), version, canary_weight=in_force)
    except ManifestError as err:
        message = "; ".join(str(e) for e in err.errors)
        new = status.invalid_status(generation=generation, message=message, previous=previous, now=now())
        outcome = Outcome(status_written=_write_status(kube, namespace, name, new, previous), status=new)
        if outcome.status_written:
            outcome.events.append(("Warning", "InvalidSpec", message[:1000]))
        return outcome

    if live is None:
        live = fetch_children(kube, name=name, namespace=namespace)
    canary = _canary(rendered, live=live, previous=previous, clock=clock)
    if canary is not None and canary.status["weight"] != in_force:  # the gateways' config changes
        rendered = renderer(stack_document(body), version, canary_weight=canary.status["weight"])
    stack = rendered.stack
    applied = apply_children(kube, namespace=namespace, desired=_to_apply(rendered, live, canary), live=live,
                             owner_uid=stack.metadata.uid, hold=_held(rendered, live))
    outcome = Outcome(applied=applied)
    for key, message in applied.failed.items():
        outcome.events.append(("Warning", "ApplyFailed", f"{key[0]} {key[1]}: {message}"[:1000]))
    _autoscale(rendered, kube=kube, live=applied.live, outcome=outcome, memory=scale_memory, clock=clock)
    if canary is not None:
        if canary.event is not None:
            outcome.events.append(canary.event)
        if canary.recheck_at is not None:
            wait = max(0.0, canary.recheck_at - clock())
            outcome.recheck_in = wait if outcome.recheck_in is None else min(wait, outcome.recheck_in)
    adapters, adapter_events = adapter_state(stack, live=applied.live, previous=previous, now=clock())
    outcome.events += adapter_events
    collection_check = _collection(rendered, qdrant=qdrant, live=applied.live, outcome=outcome)
    checks = status.layer_checks(rendered, applied.live, collection=collection_check, failed=applied.failed)
    gateway = applied.live.get(rendered.gateway) or {}
    new = status.build_status(
        rendered, generation=generation, checks=checks,
        gateway_ready_replicas=int((gateway.get("status") or {}).get("availableReplicas") or 0),
        previous=previous, now=now(),
        evaluation=status.evaluation_status(
            applied.live.get(rendered.evaluation_job) if rendered.evaluation_job is not None else None,
            config_hash=config_hash(stack.spec), previous=previous),
        ingestion=status.ingestion_status(
            applied.live.get(rendered.ingestion_job) if rendered.ingestion_job is not None else None),
        model=_model_status(canary, adapters),
    )
    outcome.status_written = _write_status(kube, namespace, name, new, previous)
    outcome.status = new
    ingestion = new.get("ingestion") or {}
    if outcome.status_written and ingestion.get("phase") == "Failed" and \
            (previous.get("ingestion") or {}).get("phase") != "Failed":
        outcome.events.append(("Warning", "IngestionFailed",
                               f"Job {ingestion['job']}: {ingestion['message']}"))
    if (outcome.status_written and collection_check is not None
            and collection_check.reason == "CollectionMismatch"):
        old = {c.get("type"): c.get("reason") for c in previous.get("conditions") or []}
        if old.get("RetrievalReady") != "CollectionMismatch":
            outcome.events.append(("Warning", "CollectionMismatch", collection_check.message))
    return outcome


def _to_apply(rendered: Rendered, live: Mapping[ChildKey, Mapping[str, Any]],
              canary: canary_analysis.CanaryDecision | None = None) -> list[Manifest]:
    """The rendered children, less an evaluation Job not created yet while the gateway does not
    serve the current config (its Deployment holds what this render applies and its pods are
    available), and less the canary's evaluation Job not created yet while the canary has not
    started (its pods first; none for a canary already rolled back or promoted, or whose verdict
    the status keeps). A Job already created stays (it is not pruned when the gateway has a bad
    moment, nor re-run)."""
    held = [job for job in (rendered.evaluation_job, rendered.canary_evaluation_job)
            if job is not None and job not in live]
    if not held:
        return rendered.manifests
    key = rendered.gateway
    serving = in_sync(live.get(key), rendered.manifest(key)) and status.workload_check(live, *key).ok
    wait = [] if serving else held
    if rendered.canary_evaluation_job in held and rendered.canary_evaluation_job not in wait:
        state = canary.status if canary is not None else {}
        kept = (state.get("evaluation") or {}).get("verdict")
        if state.get("since") is None or state.get("verdict") in ("RolledBack", "Promoted") or \
                kept in ("Passed", "Failed"):
            wait.append(rendered.canary_evaluation_job)
    return rendered.without(*wait) if wait else rendered.manifests


def _autoscale(rendered: Rendered, *, kube: Kube, live: Mapping[ChildKey, Mapping[str, Any]],
               outcome: Outcome, memory: ScaleMemory | None, clock: Callable[[], float]) -> None:
    """The built-in autoscaler's step, once the model's Deployment exists (not while it is held for
    the model cache's pull)."""
    vllm = rendered.stack.spec.model.vllm
    scaling = vllm.autoscaling if vllm is not None else None
    model, lease = rendered.model, rendered.load_lease
    if scaling is None or lease is None or model is None or model not in live:
        return
    now = clock()
    decision, scaled = autoscale(kube, namespace=rendered.stack.namespace, scaling=scaling, model=model,
                                 live=live, lease=lease, now=now, memory=memory or ScaleMemory())
    outcome.scale_memory = decision.memory
    outcome.recheck_in = None if decision.recheck_at is None else max(0.0, decision.recheck_at - now)
    if scaled:
        log.info("scaled %s/%s to %d: %s", rendered.stack.namespace, model[1], decision.replicas,
                 decision.reason)
        outcome.events.append(("Normal", "Scaled", f"model scaled to {decision.replicas}: {decision.reason}"))


def _canary(rendered: Rendered, *, live: Mapping[ChildKey, Mapping[str, Any]], previous: Mapping[str, Any],
            clock: Callable[[], float]) -> canary_analysis.CanaryDecision | None:
    """The canary's weight in force and verdict (None: the stack has no canary)."""
    spec = rendered.stack.spec.model.canary
    if spec is None:
        return None
    lease = live.get(rendered.load_lease) if rendered.load_lease is not None else None
    ready = rendered.canary is None or status.workload_check(live, *rendered.canary).ok
    job = rendered.canary_evaluation_job
    evaluation = None if job is None else canary_analysis.CanaryEvaluation(
        job[1], (status.evaluation_verdict(live[job]) or "Running") if job in live else None)
    return canary_analysis.decide(spec, previous=(previous.get("model") or {}).get("canary"), lease=lease,
                                  now=clock(), ready=ready, evaluation=evaluation)


def _model_status(canary: canary_analysis.CanaryDecision | None,
                  adapters: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """`status.model`: the canary in force and the adapters' state (None: neither applies)."""
    out: dict[str, Any] = {}
    if canary is not None:
        out["canary"] = canary.status
    if adapters is not None:
        out["adapters"] = adapters
    return out or None


def _held(rendered: Rendered, live: Mapping[ChildKey, Mapping[str, Any]]) -> set[ChildKey]:
    """The model's Deployment while the weights it loads are not pulled yet: not created, or (a new
    model) left serving the old one, so that its GPU pods never wait on a download."""
    job = rendered.pull_job
    if job is None or rendered.model is None or status.job_finished(live.get(job)) == "Complete":
        return set()
    return {rendered.model}


def _collection(rendered: Rendered, *, qdrant: QdrantFactory,
                live: Mapping[ChildKey, Mapping[str, Any]], outcome: Outcome) -> Check | None:
    """Check the collection once its Qdrant is up; None when the stack has no retrieval."""
    stack = rendered.stack
    if stack.spec.retrieval is None:
        return None
    if rendered.store is not None and not status.workload_check(live, *rendered.store).ok:
        return None  # layer_checks reports the StatefulSet's progress
    if rendered.collection_job is not None:  # an external Qdrant with a key: the Job holds the key
        return status.collection_check(rendered, live)
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        client = collection.connect(stack, managed_url=rendered.qdrant_url, factory=qdrant)
        return collection.ensure_collection(client, stack)
    except (ResponseHandlingException, UnexpectedResponse, OSError, ApiError) as err:
        outcome.retry = f"Qdrant: {err}"
        return Check(ok=False, reason="VectorStoreUnreachable", message=str(err)[:500])


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
        rendered = parse_and_render(stack_document(body), version)
    except ManifestError:
        return "invalid spec: nothing to clean up"
    stack = rendered.stack
    retrieval = stack.spec.retrieval
    if retrieval is None:
        return "no retrieval layer"
    name = collection_spec(stack).name
    if retrieval.collection.deletion_policy != "Delete":
        return f"collection {name!r} retained (deletionPolicy Retain)"
    if rendered.collection_job is not None:  # refused by validation; a stored older object may have it
        return f"collection {name!r} retained: the operator holds no key to the external Qdrant"
    client = collection.connect(stack, managed_url=rendered.qdrant_url, factory=qdrant)
    deleted = collection.delete_collection(client, stack)
    return f"collection {name!r} deleted" if deleted else f"collection {name!r} was already gone"
