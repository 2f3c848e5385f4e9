"""`aistack ingest` and `aistack eval` on this machine: the manifest, the flags and the state
folder (a running `aistack up`, its lock) resolved into the plans that `runtime/ingestion` and
`runtime/evaluation` carry out. Here, not there, because those packages sit below `local`.

Every refusal raises the command's `...Unavailable` with a message that names what to pass or
start; the CLI prints it and exits `UNAVAILABLE` (`aistack.api.commands`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from aistack.api.commands import DEFAULT_API_KEY_ENV
from aistack.api.manifests import ManifestError, load_stack
from aistack.api.types import quantity_value
from aistack.api.v1alpha1 import AIStack
from aistack.runtime.evaluation.compare import ComparisonResult, compare
from aistack.runtime.evaluation.evaluate import (
    EvaluationPlan,
    EvaluationProgress,
    EvaluationResult,
    EvaluationUnavailable,
    evaluate,
    first_api_key,
)
from aistack.runtime.ingestion.ingest import (
    IngestionPlan,
    IngestionProgress,
    IngestionResult,
    IngestionUnavailable,
    ingest,
)
from aistack.runtime.local.state import StateBusy, StateLock, local_retrieval_config, running_stack, state_dir


@dataclass(frozen=True, kw_only=True)
class EvaluationRequest:
    """`aistack eval`'s arguments; None: the default (the manifest's, else the running `aistack up`'s)."""

    manifest: Path
    dataset: Path | None = None
    endpoint: str | None = None
    tracking_uri: str | None = None
    api_key_env: str = DEFAULT_API_KEY_ENV
    state: Path | None = None
    model_version: str | None = None
    """`stable` or `canary`: only that version of a canary split answers."""


@dataclass(frozen=True, kw_only=True)
class IngestionRequest:
    """`aistack ingest`'s arguments; no paths: the manifest's `retrieval.sources`."""

    manifest: Path
    paths: tuple[str, ...] = ()
    prune: bool = False
    tenant: str | None = None
    state: Path | None = None
    qdrant_url: str | None = None
    base: Path | None = None
    max_file_size: str | None = None
    """`--max-file-size`, a quantity (`64Mi`); None: the manifest's `retrieval.maxFileSize`."""


def run_evaluation(request: EvaluationRequest, *, progress: EvaluationProgress) -> EvaluationResult:
    return asyncio.run(evaluate(evaluation_plan(request), progress=progress))


def run_comparison(request: EvaluationRequest, *, progress: EvaluationProgress) -> ComparisonResult:
    """`aistack eval --compare-stable`: the canary and the stable version on the same questions."""
    return asyncio.run(compare(evaluation_plan(request), progress=progress))


def evaluation_plan(request: EvaluationRequest) -> EvaluationPlan:
    stack = _load(request.manifest, EvaluationUnavailable)
    spec = stack.spec
    dataset = request.dataset
    if dataset is None:
        if spec.evaluation is None or spec.evaluation.dataset.path is None:
            raise EvaluationUnavailable("no DATASET given and the manifest has no evaluation.dataset.path: "
                                        "name the JSONL file")
        dataset = request.manifest.resolve().parent / spec.evaluation.dataset.path
    from aistack.runtime.evaluation.dataset import DatasetError, load_dataset

    try:
        questions = load_dataset(dataset)
    except DatasetError as exc:
        raise EvaluationUnavailable(str(exc)) from None
    folder = state_dir(request.manifest, stack, request.state)
    running = running_stack(folder)
    endpoint = request.endpoint or (running.gateway_url if running else None)
    if endpoint is None:
        raise EvaluationUnavailable("no gateway to evaluate: start `aistack up` for this manifest, or pass "
                                    "--endpoint URL")
    base_url = endpoint.rstrip("/") if endpoint.rstrip("/").endswith("/v1") else endpoint.rstrip("/") + "/v1"
    # a local stack on the offline model serves it under its own name: ask for that, and say so in the run
    served = running if running is not None and base_url == running.gateway_url.rstrip("/") + "/v1" else None
    tracking_uri = request.tracking_uri
    external = spec.observability.mlflow.external if spec.observability is not None else None
    if tracking_uri is None and external is not None:
        tracking_uri = external.tracking_uri
    tracking_uri = tracking_uri or (running.mlflow_url if running else None)
    if tracking_uri is None:
        raise EvaluationUnavailable("no MLflow to log the run to: start `aistack up` (it runs one), or pass "
                                    "--tracking-uri URL")
    try:
        retrieval = local_retrieval_config(stack, state=folder)
    except ValueError:  # no retrieval layer, or one this machine cannot wire: groundedness is then omitted
        retrieval = None
    return EvaluationPlan(
        stack=stack, questions=questions, dataset=str(dataset), base_url=base_url,
        model=served.model if served else spec.model.public_name,
        offline_model=bool(served and served.offline_model),
        api_key=first_api_key(os.environ.get(request.api_key_env)), tracking_uri=tracking_uri,
        retrieval=retrieval, model_version=request.model_version)


def run_ingestion(request: IngestionRequest, *, progress: IngestionProgress) -> IngestionResult:
    plan = ingestion_plan(request)
    folder = state_dir(request.manifest, plan.stack, request.state)
    # the embedded store lives in the state folder: a running `aistack up` owns it, so say so
    # now rather than after loading the embedder
    owner = contextlib.nullcontext() if request.qdrant_url else StateLock(folder, command="aistack ingest")
    try:
        with owner:
            return asyncio.run(ingest(plan, progress=progress))
    except StateBusy as exc:
        raise IngestionUnavailable(f"{exc.holder}: ingest when it has stopped (`aistack up` ingests "
                                   "retrieval.sources itself when it starts)") from None


def ingestion_plan(request: IngestionRequest) -> IngestionPlan:
    from aistack.runtime.ingestion.sources import Target

    manifest = request.manifest
    stack = _load(manifest, IngestionUnavailable)
    if stack.spec.retrieval is None:
        raise IngestionUnavailable(f"{manifest}: spec.retrieval: the stack has no retrieval layer, so there "
                                   "is nothing to ingest into")
    base = (request.base or manifest.parent).resolve()
    if not base.is_dir():
        raise IngestionUnavailable(f"--base: {base} is not a folder")
    tenant = request.tenant
    if request.paths:
        targets = [Target(uri=p if p.startswith("s3://") else str(Path(p).resolve()), tenant=tenant)
                   for p in request.paths]
    else:
        sources = stack.spec.retrieval.sources
        if not sources:
            raise IngestionUnavailable("no PATH given and the manifest declares no retrieval.sources: "
                                       "name what to ingest")
        targets = [Target(uri=s.uri, tenant=tenant or s.tenant, include=tuple(s.include)) for s in sources]
    max_file_bytes = stack.spec.retrieval.max_file_bytes
    if request.max_file_size is not None:
        try:
            max_file_bytes = int(quantity_value(request.max_file_size))
        except ValueError:
            max_file_bytes = 0
        if max_file_bytes < 1:
            raise IngestionUnavailable(f"--max-file-size: {request.max_file_size!r} is not a size of at "
                                       "least 1 byte (examples: 64Mi, 500k, 1048576)")
    folder = state_dir(manifest, stack, request.state)
    config = local_retrieval_config(stack, state=folder, qdrant_url=request.qdrant_url)
    return IngestionPlan(stack=stack, config=config, targets=targets, base=base, prune=request.prune,
                         max_file_bytes=max_file_bytes)


def _load(manifest: Path, unavailable: type[RuntimeError]) -> AIStack:
    try:
        return load_stack(manifest)
    except ManifestError as exc:
        raise unavailable(str(exc)) from None
