"""Run-to-completion work of a stack: the ingestion Job (`aistack ingest` of
`retrieval.sources` into the in-cluster Qdrant), the evaluation Job (`aistack eval` against
the gateway Service), the canary's evaluation Job (`aistack eval --compare-stable`) and the
collection Job (`aistack collection` on an external Qdrant with a
key: the Job holds the key, so the operator reads no Secret), plus the ConfigMap holding the
stack's manifest that they read.

The Jobs are named by a short hash of what they depend on, so a change of their inputs is a
new Job (a new run) and an unchanged stack keeps its finished Job (no re-run on resync). Their
pod templates are immutable in Kubernetes; a name per content hash means the operator never
has to patch one.

Left unset on purpose, so that the server's defaults stay out of the operator's three-way
diff and a finished Job stays what the operator rendered:
- `ttlSecondsAfterFinished`: the TTL controller would delete the finished Job, the operator
  (which still renders it) would create it again, and it would re-run on every expiry. The
  finished Job is the record that this input was processed; it is pruned with its hash.
- `backoffLimit`: the API default (6) retries ingestion on transient failures
  (`IngestExit.UNAVAILABLE`: Qdrant still starting); ingestion ends at once on
  `IngestExit.SKIPPED` (a retry reads the same files), and the evaluation Job on its first
  exit code, both through `podFailurePolicy`. The command lines and their exit codes are
  `aistack.api.commands`, which the CLI is declared with.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aistack.api.collection import collection_spec
from aistack.api.commands import (
    CollectionCommand,
    CollectionExit,
    EvalCommand,
    EvalExit,
    IngestCommand,
    IngestExit,
)
from aistack.api.config_hash import config_hash
from aistack.api import resources as default_resources
from aistack.api.conventions import (
    COMPONENT_CANARY_EVALUATION,
    COMPONENT_COLLECTION,
    COMPONENT_EVALUATION,
    COMPONENT_INGESTION,
    CONFIG_HASH_ANNOTATION,
)
from aistack.api.types import Resources, SecretKeyRef
from aistack.api.v1alpha1 import AIStack
from aistack.api.v1alpha1.retrieval import Source
from aistack.operator.render.common import (
    Manifest,
    RenderContext,
    config_file,
    container_security,
    content_hash,
    labels,
    metadata,
    pod_security,
    resources,
    secret_env,
    service_account,
)
from aistack.operator.render.endpoints import gateway_endpoint, qdrant_url, tracking_uri

MANIFEST_SUFFIX = "manifest"
MANIFEST_COMPONENT = "manifest"
MANIFEST_DIR = "/etc/aistack/manifest"
MANIFEST_FILE = "aistack.yaml"
DATASET_DIR = "/etc/aistack/dataset"
DATASET_FILE = "dataset.jsonl"
STATE_DIR = "/tmp/aistack"
SOURCES_DIR = "/sources"
"""Where the ingestion Job mounts the sources' volumes, each at its path (`--base`)."""
INGEST_CONTAINER = "ingest"
EVAL_CONTAINER = "eval"
COLLECTION_CONTAINER = "collection"
SUFFIX_LENGTH = 10


def ingestion_job_name(ctx: RenderContext, suffix: str) -> str:
    return ctx.name(f"ingest-{suffix}")


def evaluation_job_name(ctx: RenderContext, suffix: str) -> str:
    return ctx.name(f"eval-{suffix}")


def canary_evaluation_job_name(ctx: RenderContext, suffix: str) -> str:
    return ctx.name(f"eval-canary-{suffix}")


def collection_job_name(ctx: RenderContext, suffix: str) -> str:
    return ctx.name(f"coll-{suffix}")


def _in_cluster(source: Source) -> bool:
    """The ingestion Job can read it: an `s3://` prefix, or a path with a volume."""
    return source.uri.startswith("s3://") or source.volume is not None


def cluster_sources(ctx: RenderContext) -> list[Source]:
    retrieval = ctx.stack.spec.retrieval
    return [] if retrieval is None else [s for s in retrieval.sources if _in_cluster(s)]


def local_only_sources(stack: AIStack) -> list[str]:
    """Paths without a volume: `aistack ingest` reads them, the cluster cannot."""
    retrieval = stack.spec.retrieval
    return [] if retrieval is None else [s.uri for s in retrieval.sources if not _in_cluster(s)]


def manifest_document(ctx: RenderContext) -> dict[str, Any]:
    """The stack as an AIStack manifest, as `aistack ingest/eval` read it: the spec in wire form
    (it holds Secret references only: the API refuses inline secrets), no status, no uid."""
    stack = ctx.stack
    spec = stack.spec.to_wire()
    if "retrieval" in spec:  # only what the Job can read: a path with no volume is not there
        spec["retrieval"]["sources"] = [source.to_wire() for source in cluster_sources(ctx)]
    return {
        "apiVersion": stack.apiVersion, "kind": stack.kind,
        "metadata": {"name": stack.name, "namespace": stack.namespace},
        "spec": spec,
    }


def manifest_config_map(ctx: RenderContext) -> Manifest:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": metadata(ctx, name=ctx.name(MANIFEST_SUFFIX), component=MANIFEST_COMPONENT),
        "data": {MANIFEST_FILE: config_file(manifest_document(ctx))},
    }


def ingestion_job(ctx: RenderContext) -> Manifest | None:
    """None without a source the cluster can read."""
    retrieval = ctx.stack.spec.retrieval
    sources = cluster_sources(ctx)
    if retrieval is None or not sources:
        return None
    secrets: list[SecretKeyRef | None] = [retrieval.embedder.api_key_secret_ref]
    if retrieval.vector_store.external is not None:
        secrets.append(retrieval.vector_store.external.api_key_secret_ref)
    args = IngestCommand(manifest=f"{MANIFEST_DIR}/{MANIFEST_FILE}", qdrant_url=str(qdrant_url(ctx)),
                         state=STATE_DIR,
                         base=SOURCES_DIR).args()
    volumes, mounts = source_volumes(sources)
    spec = _job_spec(ctx, component=COMPONENT_INGESTION, container=_container(
        ctx, name=INGEST_CONTAINER, args=args, env=_secret_envs(secrets), mounts=mounts,
        resources=resources(retrieval.ingestion_resources, default_resources.INGESTION_JOB)), volumes=volumes,
        account=ctx.stack.spec.gateway.service_account_name)  # the gateway's: it may read the sources
    spec["podFailurePolicy"] = {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": INGEST_CONTAINER, "operator": "In",
                                              "values": [int(IngestExit.SKIPPED)]}},
    ]}
    # the Job re-runs when the sources or how they are chunked, embedded or stored change
    suffix = content_hash(ctx.stack.spec.to_wire()["retrieval"], spec)[:SUFFIX_LENGTH]
    return _job(ctx, name=ingestion_job_name(ctx, suffix), component=COMPONENT_INGESTION, spec=spec,
                annotations={})


def collection_job(ctx: RenderContext) -> Manifest | None:
    """`aistack collection` with the external Qdrant's key from its Secret; None unless the stack
    uses an external Qdrant with a key (the operator manages any other collection itself, with
    no key to read). Named by a hash of the collection, the URL and the Job: a changed
    collection is checked again, an unchanged one is not."""
    retrieval = ctx.stack.spec.retrieval
    external = retrieval.vector_store.external if retrieval is not None else None
    if external is None or external.api_key_secret_ref is None:
        return None
    args = CollectionCommand(manifest=f"{MANIFEST_DIR}/{MANIFEST_FILE}").args()
    container = _container(ctx, name=COLLECTION_CONTAINER, args=args,
                           env=_secret_envs([external.api_key_secret_ref]), mounts=[],
                           resources=resources(Resources(), default_resources.COLLECTION_JOB))
    spec = _job_spec(ctx, component=COMPONENT_COLLECTION, container=container, volumes=[])
    spec["podFailurePolicy"] = {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": COLLECTION_CONTAINER, "operator": "In",
                                              "values": [int(CollectionExit.MISMATCH)]}},
    ]}
    wanted = dataclasses.asdict(collection_spec(ctx.stack))
    suffix = content_hash(str(external.url), wanted, spec)[:SUFFIX_LENGTH]
    return _job(ctx, name=collection_job_name(ctx, suffix), component=COMPONENT_COLLECTION, spec=spec,
                annotations={})


def source_volumes(sources: list[Source]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and read-only mounts for the path sources: each at `SOURCES_DIR/<uri>`, so the
    documents keep the names (citations, idempotency keys) that a local `aistack ingest` of
    the same folder gives them."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for index, source in enumerate(sources):
        if source.volume is None:
            continue
        name = f"source-{index}"
        if source.volume.config_map is not None:
            volumes.append({"name": name, "configMap": {"name": source.volume.config_map}})
        else:
            volumes.append({"name": name, "persistentVolumeClaim": {
                "claimName": source.volume.persistent_volume_claim, "readOnly": True}})
        mounts.append({"name": name, "mountPath": f"{SOURCES_DIR}/{source.uri.rstrip('/')}",
                       "readOnly": True})
    return volumes, mounts


def evaluation_job(ctx: RenderContext) -> Manifest | None:
    """None without a ConfigMap dataset: only that can be mounted into the Job; a `path`
    dataset is for `aistack eval`."""
    spec_model = ctx.stack.spec
    evaluation, observability = spec_model.evaluation, spec_model.observability
    spec = _evaluation_spec(ctx, component=COMPONENT_EVALUATION)
    if spec is None or evaluation is None:
        return None
    hash_ = config_hash(spec_model)
    # a new run per promotable config, and when the thresholds, the experiment or how the run
    # is done (image, dataset, endpoints) change
    suffix = content_hash(hash_, evaluation.to_wire(), observability.to_wire() if observability else None,
                          spec_model.stage, spec)[:SUFFIX_LENGTH]
    return _job(ctx, name=evaluation_job_name(ctx, suffix), component=COMPONENT_EVALUATION, spec=spec,
                annotations={CONFIG_HASH_ANNOTATION: hash_})


def canary_evaluation_job(ctx: RenderContext) -> Manifest | None:
    """`aistack eval --compare-stable`: the canary and the stable version asked the same questions
    through the gateway (each pinned by its header), failing when the canary misses the thresholds or
    regresses past `analysis.maxEvaluationRegression`. Rendered for a canary with `analysis` in a
    stack whose evaluation Job can run (a ConfigMap dataset); the operator creates it once the canary
    has started and reads its outcome into `status.model.canary.evaluation`. The same Job as the
    stack's evaluation (container, hardening, secrets by env refs, podFailurePolicy) but for the
    flag, named by the canary and the evaluation: a changed canary is evaluated again, a weight step
    is not."""
    spec_model = ctx.stack.spec
    canary, evaluation, observability = (spec_model.model.canary, spec_model.evaluation,
                                         spec_model.observability)
    if canary is None or canary.analysis is None or evaluation is None:
        return None
    spec = _evaluation_spec(ctx, component=COMPONENT_CANARY_EVALUATION, compare_stable=True)
    if spec is None:
        return None
    suffix = content_hash(canary.to_wire(), evaluation.to_wire(),
                          observability.to_wire() if observability else None, spec_model.stage,
                          spec)[:SUFFIX_LENGTH]
    return _job(ctx, name=canary_evaluation_job_name(ctx, suffix), component=COMPONENT_CANARY_EVALUATION,
                spec=spec, annotations={})


def _evaluation_spec(ctx: RenderContext, *, component: str,
                     compare_stable: bool = False) -> dict[str, Any] | None:
    """The Job spec of an `aistack eval` against the gateway Service (None without a ConfigMap
    dataset): the gateway key and the MLflow token by env refs only, the dataset mounted read-only, ended on
    its first exit code."""
    spec_model = ctx.stack.spec
    evaluation, observability = spec_model.evaluation, spec_model.observability
    if evaluation is None or evaluation.dataset.config_map_key_ref is None:
        return None
    dataset = evaluation.dataset.config_map_key_ref
    secrets: list[SecretKeyRef | None] = [spec_model.gateway.api_keys_secret_ref]
    external = observability.mlflow.external if observability is not None else None
    token = external.token_secret_ref if external is not None else None
    secrets.append(token)
    env = _secret_envs(secrets)
    if token is not None:
        # MLflow reads the token from this variable; $(VAR) is expanded by the kubelet, so the
        # value never appears in the Job.
        env.append({"name": "MLFLOW_TRACKING_TOKEN", "value": f"$({token.env_name()})"})
    uri = tracking_uri(ctx) or (external.tracking_uri if external is not None else None)
    keys = spec_model.gateway.api_keys_secret_ref
    args = EvalCommand(manifest=f"{MANIFEST_DIR}/{MANIFEST_FILE}", dataset=f"{DATASET_DIR}/{DATASET_FILE}",
                       endpoint=gateway_endpoint(ctx), state=STATE_DIR, tracking_uri=uri,
                       api_key_env=keys.env_name() if keys is not None else None,
                       compare_stable=compare_stable).args()
    container = _container(ctx, name=EVAL_CONTAINER, args=args, env=env,
                           mounts=[{"name": "dataset", "mountPath": DATASET_DIR, "readOnly": True}],
                           resources=resources(evaluation.resources, default_resources.EVALUATION_JOB))
    volumes = [{"name": "dataset", "configMap": {"name": dataset.name,
                                                 "items": [{"key": dataset.key, "path": DATASET_FILE}]}}]
    spec = _job_spec(ctx, component=component, container=container, volumes=volumes)
    spec["podFailurePolicy"] = {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": EVAL_CONTAINER, "operator": "In",
                                              "values": [int(EvalExit.FAILED)]}},
        {"action": "FailJob", "onExitCodes": {"containerName": EVAL_CONTAINER, "operator": "NotIn",
                                              "values": [int(EvalExit.PASSED), int(EvalExit.FAILED)]}},
    ]}
    return spec


def _secret_envs(refs: list[SecretKeyRef | None]) -> list[dict[str, Any]]:
    unique = {ref.env_name(): ref for ref in refs if ref is not None}
    return [secret_env(name, unique[name]) for name in sorted(unique)]


def _container(ctx: RenderContext, *, name: str, args: list[str], env: list[dict[str, Any]],
               mounts: list[dict[str, Any]], resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "image": ctx.runtime_image,
        "command": ["python", "-m", "aistack.cli"],
        "args": args,
        # the root filesystem is read-only: home, caches and the state folder live in /tmp
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "HF_HOME", "value": "/tmp/hf"}, *env],
        "volumeMounts": [{"name": "manifest", "mountPath": MANIFEST_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}, *mounts],
        "resources": resources,
        "securityContext": container_security(),
    }


def _job_spec(ctx: RenderContext, *, component: str, container: dict[str, Any],
              volumes: list[dict[str, Any]], account: str | None = None) -> dict[str, Any]:
    return {
        "template": {
            "metadata": {"labels": labels(ctx.stack, component)},
            "spec": {
                "restartPolicy": "Never",
                **service_account(account),
                "automountServiceAccountToken": False,
                "securityContext": pod_security(),
                "containers": [container],
                "volumes": [{"name": "manifest", "configMap": {"name": ctx.name(MANIFEST_SUFFIX)}},
                            {"name": "tmp", "emptyDir": {}}, *volumes],
            },
        },
    }


def _job(ctx: RenderContext, *, name: str, component: str, spec: dict[str, Any],
         annotations: dict[str, str]) -> Manifest:
    meta = metadata(ctx, name=name, component=component)
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}
