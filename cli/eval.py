"""`aistack eval STACK.yaml [DATASET.jsonl] [--endpoint URL]`: score a stack, log it, gate on it."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from aistack.cli.progress import Stages

if TYPE_CHECKING:
    from aistack.runtime.evaluation.runner import Outcome

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

SCORING_EMBEDDER = "all-MiniLM-L6-v2"
"""Scores answers against references and context, whatever the stack embeds with, so runs compare."""


def eval_cmd(
    manifest: Annotated[Path, typer.Argument(help="The AIStack manifest.", show_default=False)],
    dataset: Annotated[Path | None, typer.Argument(
        metavar="DATASET", help="JSONL questions; the manifest's evaluation.dataset.path when omitted.",
        show_default=False)] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", metavar="URL", help="Gateway base URL (default: the running `aistack up`).")] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", metavar="URL", help="MLflow server (default: the spec's, else the running `aistack up`'s).")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env", metavar="VAR", help="Environment variable with the gateway API key (a keys file `key [tenant]` per line: the first key is used).")] = "AISTACK_API_KEY",
    state: Annotated[Path | None, typer.Option("--state", metavar="DIR", help="State folder (default: <manifest folder>/.aistack/<name>).")] = None,
) -> None:
    """Evaluate the stack on a question set and log an MLflow run.

    Runs every question through the gateway and computes the evaluation metrics. Exit code 0:
    the spec's evaluation.thresholds are met, or it defines none (nothing is gated); 1: they
    are not; 2: the evaluation could not run (bad manifest or dataset, no gateway, no MLflow).
    """
    from aistack.api.manifests import ManifestError, load_stack
    from aistack.runtime.evaluation.dataset import DatasetError, load_dataset
    from aistack.runtime.local.state import running_stack, state_dir

    try:
        stack = load_stack(manifest)
    except ManifestError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    spec = stack.spec
    if dataset is None:
        if spec.evaluation is None or spec.evaluation.dataset.path is None:
            err.print("no DATASET given and the manifest has no evaluation.dataset.path: name the JSONL file")
            raise typer.Exit(2)
        dataset = manifest.resolve().parent / spec.evaluation.dataset.path
    try:
        questions = load_dataset(dataset)
    except DatasetError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    folder = state_dir(manifest, stack, state)
    running = running_stack(folder)
    endpoint = endpoint or (running.gateway_url if running else None)
    if endpoint is None:
        err.print("no gateway to evaluate: start `aistack up` for this manifest, or pass --endpoint URL")
        raise typer.Exit(2)
    base_url = endpoint.rstrip("/") if endpoint.rstrip("/").endswith("/v1") else endpoint.rstrip("/") + "/v1"
    # a local stack on the offline model serves it under its own name: ask for that, and say so in the run
    served = running if running is not None and base_url == running.gateway_url.rstrip("/") + "/v1" else None
    model = served.model if served else spec.model.public_name
    offline_model = bool(served and served.offline_model)
    if tracking_uri is None and spec.observability is not None and spec.observability.mlflow.external is not None:
        tracking_uri = spec.observability.mlflow.external.tracking_uri
    tracking_uri = tracking_uri or (running.mlflow_url if running else None)
    if tracking_uri is None:
        err.print("no MLflow to log the run to: start `aistack up` (it runs one), or pass --tracking-uri URL")
        raise typer.Exit(2)
    thresholds = spec.evaluation.thresholds if spec.evaluation else {}
    try:
        with Stages(err) as stages:
            values, outcomes, verdict, run_url = asyncio.run(_evaluate(
                stack=stack, folder=folder, questions=questions, base_url=base_url, model=model,
                offline_model=offline_model, api_key=first_api_key(os.environ.get(api_key_env)),
                tracking_uri=tracking_uri, dataset=str(dataset), stages=stages))
    except _Unavailable as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    out.print(metrics_table(values, thresholds))
    out.print(f"{len(outcomes)} questions, MLflow run: {run_url}")
    if not thresholds:
        out.print("no thresholds defined (spec.evaluation.thresholds): nothing gated", markup=False)
        return
    for failure in verdict.failures:
        err.print(f"[red]threshold not met[/red] {failure}")
    out.print("thresholds met" if verdict.passed else "thresholds NOT met",
              style="green" if verdict.passed else "bold red")
    if not verdict.passed:
        raise typer.Exit(1)


class _Unavailable(RuntimeError):
    pass


async def _evaluate(*, stack, folder, questions, base_url, model, offline_model, api_key, tracking_uri, dataset,  # type: ignore[no-untyped-def]
                    stages: Stages):
    from aistack.runtime.evaluation.runner import aggregate, check_thresholds, openai_asker, run_questions
    from aistack.runtime.evaluation.tracking import log_run
    from aistack.runtime.retrieval.embedders import LocalEmbedder

    spec = stack.spec
    stages.begin(f"checking the gateway at {base_url}")
    await asyncio.to_thread(_probe_gateway, base_url)
    stages.begin(f"loading the embedder that scores answers ({SCORING_EMBEDDER})")
    embedder = await asyncio.to_thread(LocalEmbedder, model=SCORING_EMBEDDER)
    if stack.spec.retrieval is not None:
        stages.begin("finding the stack's passages (for groundedness)")
    context, close = _context_source(stack, folder, base_url)
    stages.end()
    try:
        with QuestionProgress(err, total=len(questions)) as progress:
            outcomes = await run_questions(questions, ask=openai_asker(base_url=base_url, model=model, api_key=api_key),
                                           embedder=embedder, context_source=context, on_question=progress.done)
    finally:
        await close()
    if all(o.error for o in outcomes):
        raise _Unavailable(f"every question failed against {base_url}; first error: {outcomes[0].error}")
    values = aggregate(outcomes)
    verdict = check_thresholds(values, spec.evaluation.thresholds if spec.evaluation else {})
    stages.begin(f"logging the run to MLflow at {tracking_uri}")
    try:
        _, run_url = await asyncio.to_thread(
            log_run, tracking_uri=tracking_uri, stack=stack, values=values, outcomes=outcomes, verdict=verdict,
            dataset=dataset, endpoint=base_url, served_model=model, offline_model=offline_model)
    except Exception as exc:  # MLflow raises many types; the run is the point of `eval`
        raise _Unavailable(f"could not log the run to MLflow at {tracking_uri}: {exc}") from exc
    stages.end()
    return values, outcomes, verdict, run_url


def _probe_gateway(base_url: str) -> None:
    """Fail in a second, before the embedder loads, when nothing answers at the endpoint
    (any HTTP answer will do: an external endpoint need not serve /healthz)."""
    import httpx

    root = base_url.removesuffix("/v1")
    try:
        httpx.get(f"{root}/healthz", timeout=10)
    except httpx.HTTPError as exc:
        raise _Unavailable(f"no gateway answers at {root} ({type(exc).__name__}: {exc}): start `aistack up` "
                           "for this manifest, or pass --endpoint URL") from exc


class QuestionProgress:
    """The questions as they are asked: a bar (question i/N, elapsed, how the last one went) on
    a terminal; elsewhere one plain line per question, so a CI log shows each as it ends."""

    def __init__(self, console: Console, *, total: int) -> None:
        self.console = console
        self.total = total
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last = time.monotonic()

    def __enter__(self) -> QuestionProgress:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("question"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[last]}"), console=self.console)
            self._progress.start()
            self._task = self._progress.add_task("questions", total=self.total, last="")
        self._last = time.monotonic()
        return self

    def done(self, position: int, outcome: Outcome) -> None:
        now = time.monotonic()
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=position, last=outcome.summary())
        else:
            self.console.print(f"question {position}/{self.total}: {outcome.summary()} ({now - self._last:.1f} s)",
                               markup=False, highlight=False)
        self._last = now

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def _context_source(stack, folder, base_url):  # type: ignore[no-untyped-def]
    """Passage texts for groundedness: the running local stack's retrieve route, else the
    stack's own store opened here; none when neither is reachable (groundedness is then omitted)."""
    import httpx

    from aistack.runtime.local.state import local_retrieval_config
    from aistack.runtime.retrieval.factory import build_retriever
    from aistack.runtime.retrieval.store import StoreError

    async def nothing() -> None:
        return None

    if stack.spec.retrieval is None:
        return None, nothing
    root = base_url.removesuffix("/v1")
    client = httpx.AsyncClient(timeout=30)
    retriever = None
    try:
        with httpx.Client(timeout=5) as probe_client:  # once, before the questions: blocking is fine here
            remote = probe_client.post(f"{root}/aistack/retrieve", json={"query": "ping"}).status_code == 200
    except httpx.HTTPError:
        remote = False
    if not remote:
        try:
            retriever = build_retriever(local_retrieval_config(stack, state=folder))
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


def metrics_table(values: dict[str, float], thresholds: dict[str, Any]) -> Table:
    from aistack.api.v1alpha1.mlops import EVAL_METRICS

    table = Table(title="evaluation")
    for column in ("metric", "value", "threshold", ""):
        table.add_column(column)
    for name in EVAL_METRICS:
        bound = thresholds.get(name)
        value = values.get(name)
        limit = ""
        status = ""
        if bound is not None:
            limit = " ".join(x for x in (f">= {bound.min:g}" if bound.min is not None else "",
                                         f"<= {bound.max:g}" if bound.max is not None else "") if x)
            ok = value is not None and (bound.min is None or value >= bound.min) and (bound.max is None or value <= bound.max)
            status = "[green]ok[/green]" if ok else "[red]FAIL[/red]"
        table.add_row(name, "-" if value is None else f"{value:.4g}", limit, status)
    return table


def first_api_key(value: str | None) -> str | None:
    """The first key of a gateway keys value (`key [tenant]` per line), so the evaluation Job
    can take the same Secret the gateway reads; a plain single key passes through."""
    for line in (value or "").splitlines():
        if line.split():
            return line.split()[0]
    return None
