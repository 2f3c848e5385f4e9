"""The AIStack status: one condition per declared layer, `Ready`, phase, endpoint, hash.

Readiness comes from the children as the API server reports them (Deployment available
replicas, StatefulSet ready replicas) and from the collection check; which child is which
layer's, the endpoint and the selector come from the render (`Rendered`). Pure: the caller
passes the clock, so tests pin time and a recomputed status equals the stored one when nothing
changed (and then nothing is written).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from aistack.api.commands import CollectionExit, EvalExit, IngestExit
from aistack.api.model_cache import PullExit
from aistack.api.config_hash import config_hash
from aistack.api.conventions import (
    CONDITION_GATEWAY,
    CONDITION_GUARDRAILS,
    CONDITION_MODEL,
    CONDITION_READY,
    CONDITION_RETRIEVAL,
    CONDITION_TRACKING,
)
from aistack.api.v1alpha1 import AIStack
from aistack.operator.apply import ChildKey
from aistack.operator.check import Check
from aistack.operator.render import Rendered

OWNED_KEYS = ("conditions", "observedGeneration", "phase", "endpoint", "configHash", "replicas", "selector",
              "evaluation", "ingestion", "model")
_EXIT_CODE = re.compile(r"exit code (\d+)")


def workload_check(live: Mapping[ChildKey, Mapping[str, Any]], kind: str, name: str) -> Check:
    """Ready when the controller has seen the current spec and enough pods are available."""
    obj = live.get((kind, name))
    if obj is None:
        return Check(ok=False, reason="Creating", message=f"{kind} {name} does not exist yet")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = spec.get("replicas", 1)
    have = status.get("availableReplicas" if kind == "Deployment" else "readyReplicas") or 0
    generation = obj.get("metadata", {}).get("generation")
    seen = status.get("observedGeneration")
    if generation is not None and seen is not None and seen < generation:
        return Check(ok=False, reason="Progressing",
                     message=f"{kind} {name}: rollout of generation {generation} pending")
    if want == 0:
        return Check(ok=False, reason="ScaledToZero", message=f"{kind} {name} has 0 replicas")
    if have < want:
        return Check(ok=False, reason="Progressing", message=f"{kind} {name}: {have}/{want} pods ready")
    return Check(ok=True, reason="Available", message=f"{kind} {name}: {have}/{want} pods ready")


def layer_checks(rendered: Rendered, live: Mapping[ChildKey, Mapping[str, Any]], *,
                 collection: Check | None, failed: Mapping[ChildKey, str]) -> dict[str, Check]:
    """The condition of every layer the stack declares (undeclared layers get none)."""
    stack = rendered.stack
    spec = stack.spec
    checks: dict[str, Check] = {}
    gateway = workload_check(live, *rendered.gateway)
    if rendered.model is not None:
        checks[CONDITION_MODEL] = model_check(rendered, live)
    else:
        checks[CONDITION_MODEL] = Check(ok=True, reason="ExternalAPI",
                                        message="served by an OpenAI-compatible API")
    if spec.retrieval is not None:
        store = (workload_check(live, *rendered.store) if rendered.store is not None
                 else Check(ok=True, reason="External"))
        if not store.ok:
            checks[CONDITION_RETRIEVAL] = store
        else:
            checks[CONDITION_RETRIEVAL] = collection or Check(ok=False, reason="CollectionPending")
        if local := rendered.local_only_sources:
            check = checks[CONDITION_RETRIEVAL]
            note = f"not ingested here, a path with no volume: {', '.join(local)}"
            checks[CONDITION_RETRIEVAL] = Check(ok=check.ok, reason=check.reason,
                                                message=f"{check.message}; {note}" if check.message else note)
    if spec.guardrails is not None:
        if spec.guardrails.uses_llm:
            checks[CONDITION_GUARDRAILS] = Check(ok=gateway.ok,
                                                 reason="SidecarReady" if gateway.ok else "SidecarStarting",
                                                 message="NeMo Guardrails sidecar of the gateway pods")
        else:
            checks[CONDITION_GUARDRAILS] = Check(ok=True, reason="InProcess",
                                                 message="fast rails run in the gateway")
    if spec.observability is not None:
        if rendered.tracking is not None:
            checks[CONDITION_TRACKING] = workload_check(live, *rendered.tracking)
        else:
            checks[CONDITION_TRACKING] = Check(ok=True, reason="External", message="external MLflow")
    checks[CONDITION_GATEWAY] = gateway
    for (kind, child), message in sorted(failed.items()):
        layer = _layer_of(stack, kind, child)
        checks[layer] = Check(ok=False, reason="ApplyFailed", message=f"{kind} {child}: {message}")
    return checks


def job_finished(job: Mapping[str, Any] | None) -> str | None:
    """"Complete" or "Failed" once the Job controller says so; None while it runs (or is absent)."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return str(cond["type"])
    return None


def model_check(rendered: Rendered, live: Mapping[ChildKey, Mapping[str, Any]]) -> Check:
    """`ModelReady`: the Deployment's pods, after the model cache's pull where there is one
    (Downloading while it runs, DownloadFailed when it failed, Cached until the pods are ready)."""
    assert rendered.model is not None
    workload = workload_check(live, *rendered.model)
    vllm = rendered.stack.spec.model.vllm
    scaling = vllm.autoscaling if vllm is not None else None
    if workload.reason == "ScaledToZero" and scaling is not None and scaling.min_replicas == 0:
        # the autoscaler stopped an idle model: serving, as far as clients can tell (not a failure)
        workload = Check(ok=True, reason="ScaledToZero",
                         message=f"idle: 0 replicas after {scaling.idle_seconds}s without a request; the "
                                 f"gateway holds the next one (up to {scaling.hold_seconds}s) while the "
                                 "model starts")
    if rendered.pull_job is None:
        return workload
    name = rendered.pull_job[1]
    logs = f"`kubectl logs job/{name} -n {rendered.stack.namespace}`"
    job = live.get(rendered.pull_job)
    finished = job_finished(job)
    model = rendered.stack.spec.model.name
    if finished is None:
        return Check(ok=False, reason="Downloading",
                     message=f"Job {name} pulls {model} into the model cache; the model's pods start when it "
                             f"has finished ({logs} shows its progress)")
    if finished == "Failed":
        return Check(ok=False, reason="DownloadFailed",
                     message=f"Job {name}: {_pull_failure(job)} ({logs})"[:1000])
    if workload.ok:
        return workload
    return Check(ok=False, reason="Cached", message=f"{model} is in the model cache; {workload.message}")


def _pull_failure(job: Mapping[str, Any] | None) -> str:
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") != "Failed" or cond.get("status") != "True":
            continue
        by_policy = cond.get("reason") == "PodFailurePolicy"
        code = _EXIT_CODE.search(str(cond.get("message", ""))) if by_policy else None
        if code is not None:
            return {int(PullExit.TOO_SMALL): "the model does not fit in the cache volume: raise "
                                             "model.vllm.cache.size",
                    int(PullExit.NOT_FOUND): "the model or its mirror was not found, or is not readable "
                                             "(hfTokenSecretRef for a gated model, the service account "
                                             "for an S3 mirror)"}.get(
                int(code.group(1)), f"the pull ended with exit code {code.group(1)}")
        return f"{cond.get('reason') or 'failed'}: {cond.get('message') or 'no message'}"
    return "failed"


def collection_check(rendered: Rendered, live: Mapping[ChildKey, Mapping[str, Any]]) -> Check:
    """`RetrievalReady` of a stack on an external Qdrant with a key, from its collection Job
    (`aistack collection`, which holds the key): pending while it runs, ready when it completes,
    `CollectionMismatch` on `CollectionExit.MISMATCH`, unreachable after its retries."""
    assert rendered.collection_job is not None
    name = rendered.collection_job[1]
    logs = f"`kubectl logs job/{name} -n {rendered.stack.namespace}`"
    conditions = ((live.get(rendered.collection_job) or {}).get("status") or {}).get("conditions") or []
    for cond in conditions:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return Check(ok=True, reason="CollectionReady",
                         message=f"the collection on the external Qdrant is as the spec says (Job {name})")
        if cond.get("type") != "Failed":
            continue
        code = _EXIT_CODE.search(
            str(cond.get("message", ""))) if cond.get("reason") == "PodFailurePolicy" else None
        if code is not None and int(code.group(1)) == CollectionExit.MISMATCH:
            return Check(ok=False, reason="CollectionMismatch",
                         message="the collection on the external Qdrant holds other vectors than the "
                                 "spec's; left untouched: use another collection name, or delete and "
                                 f"re-ingest it ({logs} says how it differs)")
        return Check(ok=False, reason="VectorStoreUnreachable",
                     message=(f"Job {name}: {cond.get('reason') or 'failed'}: {cond.get('message') or ''} "
                              f"({logs}; the Job runs again when the collection, the URL or the Job "
                              "change)")[:1000])
    return Check(ok=False, reason="CollectionPending",
                 message=f"Job {name} creates or checks the collection on the external Qdrant with the key "
                         "from its Secret (the operator reads no Secret)")


def ingestion_status(job: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`status.ingestion` from the current sources' Job: Running until it finishes, then
    Succeeded or Failed. Always the same three keys: a merge patch never leaves one behind.
    `IngestExit.SKIPPED` (documents skipped) fails it at once, by its podFailurePolicy; other
    failures (store or embedder unavailable) only after the Job's retries. None without a Job (no sources the
    cluster can read, or not created yet)."""
    if job is None:
        return None
    name = job.get("metadata", {}).get("name")
    logs = f"`kubectl logs job/{name}`"
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return {"job": name, "phase": "Succeeded", "message": "every document ingested"}
        if cond.get("type") == "Failed":
            code = _EXIT_CODE.search(
                str(cond.get("message", ""))) if cond.get("reason") == "PodFailurePolicy" else None
            if code is not None and int(code.group(1)) == IngestExit.SKIPPED:
                why = "some documents could not be read and were skipped"
            else:
                why = f"{cond.get('reason') or 'failed'}: {cond.get('message') or 'no message'}"
            return {"job": name, "phase": "Failed", "message": f"{why} ({logs} names them)"[:1000]}
    return {"job": name, "phase": "Running", "message": "ingesting (retried while the store starts)"}


def evaluation_status(job: Mapping[str, Any] | None, *, config_hash: str,
                      previous: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`status.evaluation` from the current config's evaluation Job once it has finished; the
    last finished one (kept in the status) until then.

    Complete -> Passed. Failed -> the Job's podFailurePolicy ends it on the container's first
    exit code and names that code in the condition message: `EvalExit.FAILED` -> Failed,
    any other code, or a failure without one (deadline, pod deleted) -> Error. The MLflow
    run id is not read: it would take reading the pod (its termination message), an extra
    watched kind and RBAC for pods; `aistack promote` finds the run by config hash anyway.
    """
    kept = (previous or {}).get("evaluation")
    verdict = evaluation_verdict(job)
    return kept if verdict is None else {"configHash": config_hash, "verdict": verdict}


def evaluation_verdict(job: Mapping[str, Any] | None) -> Literal["Passed", "Failed", "Error"] | None:
    """An evaluation Job's outcome (the stack's or the canary's): None while it runs (or is absent)."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "Passed"
        if cond.get("type") == "Failed":
            code = _EXIT_CODE.search(
                str(cond.get("message", ""))) if cond.get("reason") == "PodFailurePolicy" else None
            return "Failed" if code is not None and int(code.group(1)) == EvalExit.FAILED else "Error"
    return None


def build_status(rendered: Rendered, *, generation: int | None, checks: Mapping[str, Check],
                 gateway_ready_replicas: int, previous: Mapping[str, Any] | None, now: str,
                 evaluation: Mapping[str, Any] | None = None,
                 ingestion: Mapping[str, Any] | None = None,
                 model: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The status the operator owns (the keys in OWNED_KEYS); `model`: `status.model` (the canary
    in force)."""
    not_ready = [t for t, c in checks.items() if not c.ok]
    ready = Check(ok=True, reason="AllLayersReady",
                  message="every declared layer is ready") if not not_ready else \
        Check(ok=False, reason="LayersNotReady", message="not ready: " + ", ".join(not_ready))
    degraded = any(c.reason in ("CollectionMismatch", "ApplyFailed") for c in checks.values())
    phase = "Ready" if ready.ok else "Degraded" if degraded else "Progressing"
    conditions = [condition(CONDITION_READY, ready, generation=generation, previous=previous, now=now)]
    conditions += [condition(t, c, generation=generation, previous=previous, now=now)
                   for t, c in checks.items()]
    return {
        "conditions": conditions,
        "observedGeneration": generation,
        "phase": phase,
        "endpoint": rendered.endpoint,
        "configHash": config_hash(rendered.stack.spec),
        "replicas": gateway_ready_replicas,
        "selector": ",".join(f"{k}={v}" for k, v in rendered.gateway_selector.items()),
        "evaluation": dict(evaluation) if evaluation else None,
        "ingestion": dict(ingestion) if ingestion else None,
        "model": dict(model) if model else None,
    }


def invalid_status(*, generation: int | None, message: str, previous: Mapping[str, Any] | None,
                   now: str) -> dict[str, Any]:
    """A spec that does not validate: Ready=False/InvalidSpec, nothing else claimed."""
    check = Check(ok=False, reason="InvalidSpec", message=message)
    return {
        "conditions": [condition(CONDITION_READY, check, generation=generation, previous=previous, now=now)],
        "observedGeneration": generation,
        "phase": "Failed",
        "evaluation": (previous or {}).get("evaluation"),
        # kept: a canary rolled back must not come back at its weight after a bad edit is fixed
        "model": (previous or {}).get("model"),
    }


def condition(kind: str, check: Check, *, generation: int | None, previous: Mapping[str, Any] | None,
              now: str) -> dict[str, Any]:
    status = "True" if check.ok else "False"
    since = now
    for old in (previous or {}).get("conditions") or []:
        if old.get("type") == kind and old.get("status") == status and old.get("lastTransitionTime"):
            since = old["lastTransitionTime"]
    return {"type": kind, "status": status, "reason": check.reason, "message": check.message,
            "lastTransitionTime": since, "observedGeneration": generation}


def status_patch(new: Mapping[str, Any], previous: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The merge patch for `.status`, or None when the owned keys are unchanged."""
    previous = previous or {}
    patch = {k: new.get(k) for k in OWNED_KEYS if previous.get(k) != new.get(k)}
    return patch or None


def _layer_of(stack: AIStack, kind: str, name: str) -> str:
    if name.endswith(("-model", "-model-cache", "-model-replicas", "-model-load", "-model-canary",
                      "-model-canary-replicas", "-model-adapters", "-adapters")) or \
            name.startswith(f"{stack.name}-model-pull-"):
        return CONDITION_MODEL
    if name.endswith("-vector-store") or name.startswith((f"{stack.name}-ingest-", f"{stack.name}-coll-")):
        return CONDITION_RETRIEVAL
    if name.endswith(("-mlflow", "-mlflow-data")):
        return CONDITION_TRACKING
    if name.endswith("-guardrails-config"):
        return CONDITION_GUARDRAILS
    return CONDITION_GATEWAY
