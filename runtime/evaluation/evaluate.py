"""One evaluation, as `aistack eval` runs it (on a laptop or in the evaluation Job): check the
gateway answers, load the scoring embedder, ask every question, score it, log the MLflow run.

The caller resolves what to evaluate into an `EvaluationPlan` (`aistack.runtime.local.commands`
does it from the manifest, the flags and a running `aistack up`), shows progress through an
`EvaluationProgress`, and turns the `EvaluationResult` into an exit code
(`aistack.api.commands.EvalExit`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import httpx

from aistack.api.gateway_config import RetrievalConfig
from aistack.api.v1alpha1 import AIStack
from aistack.api.v1alpha1.mlops import Threshold
from aistack.runtime.evaluation.dataset import Question
from aistack.runtime.evaluation.runner import (
    ContextSource,
    OnQuestion,
    Outcome,
    Verdict,
    aggregate,
    check_thresholds,
    openai_asker,
    run_questions,
)

if TYPE_CHECKING:
    from aistack.runtime.retrieval.retriever import QdrantRetriever

MODEL_VERSION_HEADER = "x-aistack-model-version"
"""The gateway's header that pins a version of a canary split (`aistack.runtime.gateway.canary`)."""
SCORING_EMBEDDER = "all-MiniLM-L6-v2"
"""Scores answers against references and context, whatever the stack embeds with, so runs compare."""


class EvaluationUnavailable(RuntimeError):
    """The evaluation cannot run (bad manifest or dataset, no gateway, no MLflow); the message
    says what to do. `aistack eval` prints it and exits `EvalExit.UNAVAILABLE`."""


@dataclass(frozen=True, kw_only=True)
class EvaluationPlan:
    """What to evaluate, resolved."""

    stack: AIStack
    questions: list[Question]
    dataset: str
    """Where the questions came from, as logged with the run."""
    base_url: str
    """The gateway's OpenAI base URL (ending in /v1)."""
    model: str
    """The model name to ask for: the spec's, or the one a local `aistack up` serves."""
    offline_model: bool
    """The gateway answers with `aistack up`'s offline model (the run is tagged, promotion refuses it)."""
    api_key: str | None
    tracking_uri: str
    retrieval: RetrievalConfig | None
    """The stack's own store, read for groundedness when the gateway has no retrieve route."""
    model_version: str | None = None
    """`stable` or `canary`: pin that version of the stack's canary split (`x-aistack-model-version`);
    None: the split decides, as for any client."""

    @property
    def thresholds(self) -> dict[str, Threshold]:
        evaluation = self.stack.spec.evaluation
        return evaluation.thresholds if evaluation is not None else {}


@dataclass(frozen=True, kw_only=True)
class EvaluationResult:
    values: dict[str, float]
    """The computed metrics (`EVAL_METRICS` names)."""
    outcomes: list[Outcome]
    verdict: Verdict
    thresholds: dict[str, Threshold]
    """Empty: nothing is gated, and the verdict passes."""
    run_url: str


class EvaluationProgress(Protocol):
    """How the caller shows an evaluation (`aistack eval`: stage lines, then a bar or a line
    per question)."""

    def begin(self, text: str) -> None:
        """A slow stage starts (and the previous one ends)."""

    def end(self) -> None:
        """The current stage ends (before the questions, and before the result)."""

    def questions(self, total: int) -> AbstractContextManager[OnQuestion]:
        """While the questions are asked: called with each one's position and outcome."""


async def evaluate(plan: EvaluationPlan, *, progress: EvaluationProgress) -> EvaluationResult:
    """Raises EvaluationUnavailable when the gateway does not answer, every question failed,
    or the run cannot be logged."""
    outcomes = (await ask_versions(plan, versions=[plan.model_version], progress=progress))[0]
    if all(o.error for o in outcomes):
        raise EvaluationUnavailable(f"every question failed against {plan.base_url}; "
                                    f"first error: {outcomes[0].error}")
    values = aggregate(outcomes)
    verdict = check_thresholds(values, plan.thresholds)
    progress.begin(f"logging the run to MLflow at {plan.tracking_uri}")
    _, run_url = await logged(plan, values=values, outcomes=outcomes, verdict=verdict,
                              model_version=plan.model_version)
    progress.end()
    return EvaluationResult(values=values, outcomes=outcomes, verdict=verdict, thresholds=plan.thresholds,
                            run_url=run_url)


async def ask_versions(plan: EvaluationPlan, *, versions: Sequence[str | None],
                       progress: EvaluationProgress) -> list[list[Outcome]]:
    """Every question asked of each version (None: whichever the split chooses), each question of
    every version in turn (who goes first alternating), so no version is asked while the gateway is
    busier or colder, and scored; the outcomes per version, in `versions`' order."""
    from aistack.runtime.retrieval.embedders import LocalEmbedder

    progress.begin(f"checking the gateway at {plan.base_url}")
    await asyncio.to_thread(_probe_gateway, plan.base_url)
    progress.begin(f"loading the embedder that scores answers ({SCORING_EMBEDDER})")
    embedder = await asyncio.to_thread(LocalEmbedder, model=SCORING_EMBEDDER)
    if plan.stack.spec.retrieval is not None:
        progress.begin("finding the stack's passages (for groundedness)")
    context, close = _context_source(plan)
    progress.end()
    asks = [openai_asker(base_url=plan.base_url, model=plan.model, api_key=plan.api_key,
                         headers={MODEL_VERSION_HEADER: version} if version else None)
            for version in versions]
    outcomes: list[list[Outcome]] = [[] for _ in versions]
    try:
        with progress.questions(len(plan.questions) * len(versions)) as on_question:
            for number, question in enumerate(plan.questions):
                for index in _turns(number, len(versions)):
                    [outcome] = await run_questions([question], ask=asks[index], embedder=embedder,
                                                    context_source=context)
                    outcomes[index].append(outcome)
                    on_question(sum(len(o) for o in outcomes), outcome)
    finally:
        await close()
    return outcomes


def _turns(number: int, versions: int) -> list[int]:
    """Which version goes first takes turns, so none always pays for a cold connection."""
    return [(number + i) % versions for i in range(versions)]


async def logged(plan: EvaluationPlan, *, values: dict[str, float], outcomes: list[Outcome], verdict: Verdict,
                 model_version: str | None, comparison: bool = False,
                 compared_with: str | None = None) -> tuple[str, str]:
    """The run logged to MLflow: (run id, URL); EvaluationUnavailable when it cannot be."""
    from aistack.runtime.evaluation.tracking import log_run

    try:
        return await asyncio.to_thread(
            log_run, tracking_uri=plan.tracking_uri, stack=plan.stack, values=values, outcomes=outcomes,
            verdict=verdict, dataset=plan.dataset, endpoint=plan.base_url, served_model=plan.model,
            offline_model=plan.offline_model, model_version=model_version, comparison=comparison,
            compared_with=compared_with)
    except Exception as exc:  # MLflow raises many types; the run is the point of `eval`
        raise EvaluationUnavailable(f"could not log the run to MLflow at {plan.tracking_uri}: {exc}") from exc


def _probe_gateway(base_url: str) -> None:
    """Fail in a second, before the embedder loads, when nothing answers at the endpoint
    (any HTTP answer will do: an external endpoint need not serve /healthz)."""
    root = base_url.removesuffix("/v1")
    try:
        httpx.get(f"{root}/healthz", timeout=10)
    except httpx.HTTPError as exc:
        raise EvaluationUnavailable(f"no gateway answers at {root} ({type(exc).__name__}: {exc}): "
                                    "start `aistack up` for this manifest, or pass --endpoint URL") from exc


def _context_source(plan: EvaluationPlan) -> tuple[ContextSource | None, Callable[[], Awaitable[None]]]:
    """Passage texts for groundedness: the gateway's retrieve route, else the stack's own store
    opened here; none when neither is reachable (groundedness is then omitted)."""
    from aistack.runtime.retrieval.factory import build_retriever
    from aistack.runtime.retrieval.store import StoreError

    async def nothing() -> None:
        return None

    if plan.stack.spec.retrieval is None:
        return None, nothing
    root = plan.base_url.removesuffix("/v1")
    client = httpx.AsyncClient(timeout=30)
    retriever: QdrantRetriever | None = None
    try:
        with httpx.Client(timeout=5) as probe_client:  # once, before the questions: blocking is fine here
            remote = probe_client.post(f"{root}/aistack/retrieve", json={"query": "ping"}).status_code == 200
    except httpx.HTTPError:
        remote = False
    if not remote and plan.retrieval is not None:
        try:
            retriever = build_retriever(plan.retrieval)
        except (StoreError, ValueError):
            retriever = None

    async def context(question: str) -> list[str]:
        if remote:
            response = await client.post(f"{root}/aistack/retrieve", json={"query": question})
            return [p["text"] for p in response.json().get("passages", [])]
        if retriever is not None:
            try:
                return [p.text for p in await retriever.search(question, tenant=None)]
            except StoreError:
                return []
        return []

    async def close() -> None:
        await client.aclose()
        if retriever is not None:
            await retriever.close()

    return context, close


def first_api_key(value: str | None) -> str | None:
    """The first key of a gateway keys value (`key [tenant]` per line), so the evaluation Job
    can take the same Secret the gateway reads; a plain single key passes through."""
    for line in (value or "").splitlines():
        if line.split():
            return line.split()[0]
    return None
