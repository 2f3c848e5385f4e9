"""`aistack eval STACK.yaml [DATASET.jsonl] [--endpoint URL]`: score a stack, log it, gate on it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from aistack.api.commands import (
    API_KEY_ENV_FLAG,
    COMPARE_STABLE_FLAG,
    DEFAULT_API_KEY_ENV,
    ENDPOINT_FLAG,
    MODEL_VERSION_FLAG,
    STATE_FLAG,
    TRACKING_URI_FLAG,
    EvalExit,
)
from aistack.cli.progress import Stages

if TYPE_CHECKING:
    from aistack.api.v1alpha1.mlops import Threshold
    from aistack.runtime.local.commands import EvaluationRequest
    from aistack.runtime.evaluation.runner import OnQuestion, Outcome

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def eval_cmd(
    manifest: Annotated[Path, typer.Argument(help="The AIStack manifest.", show_default=False)],
    dataset: Annotated[Path | None, typer.Argument(
        metavar="DATASET", help="JSONL questions; the manifest's evaluation.dataset.path when omitted.",
        show_default=False)] = None,
    endpoint: Annotated[str | None, typer.Option(
        ENDPOINT_FLAG, metavar="URL", help="Gateway base URL (default: the running `aistack up`).")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        TRACKING_URI_FLAG, metavar="URL",
        help="MLflow server (default: the spec's, else the running `aistack up`'s).")] = None,
    api_key_env: Annotated[str, typer.Option(
        API_KEY_ENV_FLAG, metavar="VAR",
        help="Environment variable with the gateway API key (a keys file `key [tenant]` per line: the first "
             "key is used).")] = DEFAULT_API_KEY_ENV,
    state: Annotated[Path | None, typer.Option(
        STATE_FLAG, metavar="DIR", help="State folder (default: <manifest folder>/.aistack/<name>).")] = None,
    model_version: Annotated[str | None, typer.Option(
        MODEL_VERSION_FLAG, metavar="VERSION",
        help="With a canary (spec.model.canary): ask only 'stable' or only 'canary' (the gateway's "
             "x-aistack-model-version header). A canary's run is logged as kind canary-evaluation, "
             "which promotion never counts.")] = None,
    compare_stable: Annotated[bool, typer.Option(
        COMPARE_STABLE_FLAG,
        help="With a canary: ask both versions the same questions and fail (exit 1) when the canary misses "
             "the thresholds or scores worse than stable by more than "
             "spec.model.canary.analysis.maxEvaluationRegression on any thresholded metric. Both runs are "
             "logged as kind canary-evaluation (never promotion evidence).")] = False,
) -> None:
    """Evaluate the stack on a question set and log an MLflow run.

    Runs every question through the gateway and computes the evaluation metrics. Exit code 0:
    the spec's evaluation.thresholds are met, or it defines none (nothing is gated); 1: they
    are not; 2: the evaluation could not run (bad manifest or dataset, no gateway, no MLflow).
    """
    from aistack.runtime.evaluation.evaluate import EvaluationUnavailable
    from aistack.runtime.local.commands import EvaluationRequest, run_evaluation

    if model_version not in (None, "stable", "canary"):
        err.print(f"{MODEL_VERSION_FLAG} {model_version!r}: use 'stable' or 'canary'", markup=False)
        raise typer.Exit(EvalExit.UNAVAILABLE)
    if compare_stable and model_version is not None:
        err.print(f"{COMPARE_STABLE_FLAG} asks both versions: leave out {MODEL_VERSION_FLAG}", markup=False)
        raise typer.Exit(EvalExit.UNAVAILABLE)
    request = EvaluationRequest(manifest=manifest, dataset=dataset, endpoint=endpoint,
                                tracking_uri=tracking_uri, api_key_env=api_key_env, state=state,
                                model_version=model_version)
    if compare_stable:
        _compare(request)
        return
    try:
        with Stages(err) as stages:
            result = run_evaluation(request, progress=_Shown(stages))
    except EvaluationUnavailable as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EvalExit.UNAVAILABLE) from None
    out.print(metrics_table(result.values, result.thresholds))
    out.print(f"{len(result.outcomes)} questions, MLflow run: {result.run_url}")
    if not result.thresholds:
        out.print("no thresholds defined (spec.evaluation.thresholds): nothing gated", markup=False)
        return
    for failure in result.verdict.failures:
        err.print(f"[red]threshold not met[/red] {failure}")
    passed = result.verdict.passed
    out.print("thresholds met" if passed else "thresholds NOT met", style="green" if passed else "bold red")
    if not passed:
        raise typer.Exit(EvalExit.FAILED)


def _compare(request: EvaluationRequest) -> None:
    from aistack.runtime.evaluation.evaluate import EvaluationUnavailable
    from aistack.runtime.local.commands import run_comparison

    try:
        with Stages(err) as stages:
            result = run_comparison(request, progress=_Shown(stages))
    except EvaluationUnavailable as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EvalExit.UNAVAILABLE) from None
    canary = result.canary
    out.print(comparison_table(result.stable.values, canary.values, canary.thresholds,
                               regressed={r.split(":", 1)[0] for r in result.regressions}))
    out.print(f"{len(canary.outcomes)} questions to each version; MLflow runs: "
              f"stable {result.stable.run_url}, canary {canary.run_url}", markup=False)
    if not canary.thresholds:
        out.print("no thresholds defined (spec.evaluation.thresholds): nothing gated", markup=False)
        return
    for failure in canary.verdict.failures:
        err.print(f"[red]canary: {'regressed' if failure in result.regressions else 'threshold not met'}"
                  f"[/red] {failure}")
    if result.passed:
        out.print(f"canary meets the thresholds and is within {result.tolerance:g} of stable", style="green")
        return
    out.print("canary FAILED against the thresholds or the stable version", style="bold red")
    raise typer.Exit(EvalExit.FAILED)


class _Shown:
    """The evaluation's stages as `Stages` lines, then its questions as `QuestionProgress`."""

    def __init__(self, stages: Stages) -> None:
        self.stages = stages

    def begin(self, text: str) -> None:
        self.stages.begin(text)

    def end(self) -> None:
        self.stages.end()

    def questions(self, total: int) -> QuestionProgress:
        return QuestionProgress(self.stages.console, total=total)


class QuestionProgress:
    """The questions as they are asked: a bar (question i/N, elapsed, how the last one went) on
    a terminal; elsewhere one plain line per question, so a CI log shows each as it ends."""

    def __init__(self, console: Console, *, total: int) -> None:
        self.console = console
        self.total = total
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last = time.monotonic()

    def __enter__(self) -> OnQuestion:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("question"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[last]}"), console=self.console)
            self._progress.start()
            self._task = self._progress.add_task("questions", total=self.total, last="")
        self._last = time.monotonic()
        return self.done

    def done(self, position: int, outcome: Outcome) -> None:
        now = time.monotonic()
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=position, last=outcome.summary())
        else:
            self.console.print(f"question {position}/{self.total}: {outcome.summary()} "
                               f"({now - self._last:.1f} s)",
                               markup=False, highlight=False)
        self._last = now

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def metrics_table(values: Mapping[str, float], thresholds: Mapping[str, Threshold]) -> Table:
    from aistack.api.v1alpha1.mlops import EVAL_METRICS

    table = Table(title="evaluation")
    for column in ("metric", "value", "threshold", ""):
        table.add_column(column)
    for name in EVAL_METRICS:
        bound = thresholds.get(name)
        value = values.get(name)
        status = "" if bound is None else "[green]ok[/green]" if _within(value, bound) else "[red]FAIL[/red]"
        table.add_row(name, _shown(value), _limit(bound), status)
    return table


def comparison_table(stable: Mapping[str, float], canary: Mapping[str, float],
                     thresholds: Mapping[str, Threshold], *, regressed: set[str]) -> Table:
    """Both versions side by side; the status is the canary's (threshold, then regression)."""
    from aistack.api.v1alpha1.mlops import EVAL_METRICS

    table = Table(title="canary against stable")
    for column in ("metric", "stable", "canary", "threshold", ""):
        table.add_column(column)
    for name in EVAL_METRICS:
        bound = thresholds.get(name)
        status = ""
        if bound is not None:
            value = canary.get(name)
            ok = _within(value, bound)
            status = "[red]FAIL[/red]" if not ok else "[red]REGRESSED[/red]" if name in regressed else \
                "[green]ok[/green]"
        table.add_row(name, _shown(stable.get(name)), _shown(canary.get(name)), _limit(bound), status)
    return table


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _limit(bound: Threshold | None) -> str:
    if bound is None:
        return ""
    return " ".join(x for x in (f">= {bound.min:g}" if bound.min is not None else "",
                                f"<= {bound.max:g}" if bound.max is not None else "") if x)


def _within(value: float | None, bound: Threshold) -> bool:
    return value is not None and (bound.min is None or value >= bound.min) and (bound.max is None
                                                                             or value <= bound.max)
