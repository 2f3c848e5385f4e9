"""`aistack promote FROM TO`: move a stage's tested behaviour into the next stage, gated on
its MLflow evaluation run (exit 0 promoted or nothing to do, 1 refused, 2 cannot plan)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from aistack.cli.progress import Stages

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

if TYPE_CHECKING:
    from aistack.cli.promotion.plan import Plan


def promote_cmd(
    source: Annotated[str, typer.Argument(metavar="FROM",
                                          help="Stage whose behaviour is promoted, e.g. dev.")],
    target: Annotated[str, typer.Argument(metavar="TO", help="Stage to promote into, e.g. staging.")],
    repo: Annotated[Path, typer.Option(metavar="DIR",
                                       help="The GitOps folder (with base/ and stages/).")] = Path("deploy"),
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the diff and the verdict; change nothing (also on a dirty tree).")] = False,
    tracking_uri: Annotated[str | None, typer.Option(metavar="URL",
                                                     help="MLflow tracking URI (else MLFLOW_TRACKING_URI, "
                                                          "else the stage's external MLflow).")] = None,
    max_age_hours: Annotated[float | None, typer.Option(
        metavar="HOURS",
        help="Oldest acceptable evaluation run; overrides TO's evaluation.maxRunAgeHours.")] = None,
) -> None:
    """Promote a stage's evaluated behaviour into the next stage.

    Moves FROM's promotable spec (model, prompts, orchestration, retrieval, guardrails) to TO.
    Looks up the latest MLflow evaluation run for exactly FROM's config hash, checks it against
    TO's thresholds and run age, writes TO's overlay (its stage-owned fields stay) and commits
    with the run id, metrics and diff in the message. Refuses on a dirty working tree.
    """
    from datetime import timedelta

    from aistack.cli.promotion import plan as promotion
    from aistack.cli.promotion import runs
    from aistack.cli.promotion.git import GitError
    from aistack.cli.promotion.kustomize import KustomizeError

    max_age = timedelta(hours=max_age_hours) if max_age_hours is not None else None
    if max_age is not None and max_age <= timedelta(0):
        err.print("--max-age-hours must be positive", markup=False)
        raise typer.Exit(2)
    try:
        with Stages(err) as stages:
            plan, commit = promotion.promote(
                root=repo, source=source, target=target, dry_run=dry_run, max_age=max_age,
                find_run=runs.mlflow_finder(explicit_uri=tracking_uri, on_stage=stages.begin))
    except (promotion.PromotionError, GitError, KustomizeError, runs.TrackingError) as error:
        err.print(f"cannot promote {source} -> {target}: {error}", markup=False)
        raise typer.Exit(2) from None
    show(plan, dry_run=dry_run)
    if plan.noop:
        out.print(f"nothing to promote: {target} already runs config {plan.config_hash}", markup=False)
        return
    if not plan.verdict.allowed:
        err.print(f"REFUSED {source} -> {target}: {plan.verdict.reason}", markup=False)
        raise typer.Exit(1)
    if dry_run:
        out.print(f"dry run: would promote {source} -> {target} ({plan.verdict.reason}); nothing written",
                  markup=False)
        return
    out.print(f"promoted {source} -> {target}: commit {commit[:12] if commit else '?'}", markup=False)


def show(plan: Plan, *, dry_run: bool) -> None:
    """The diff, the re-ingestion flag and the gate checks, as a reviewer reads them."""
    from aistack.cli.promotion.gate import metrics_lines

    out.print(f"{plan.stack}: {plan.source} config {plan.config_hash} -> {plan.target} "
              f"(now {plan.target_hash})", markup=False)
    for change in plan.changes:
        out.print(f"  ~ {change.describe()}", markup=False)
    for reason in plan.reingest:
        out.print(f"  ! re-ingestion needed in {plan.target}: {reason}", markup=False)
    for note in plan.review:
        out.print(f"  ! review: {note}", markup=False)
    run = plan.verdict.run
    if run is not None:
        out.print(f"evaluation run {run.run_id} ({run.experiment}, finished "
                  f"{run.finished.isoformat(timespec='seconds')})", markup=False)
    for line in metrics_lines(plan.verdict):
        out.print(f"  {line}", markup=False)
    if dry_run and plan.files.get("promoted.yaml"):
        out.print(f"--- stages/{plan.target}/promoted.yaml (would be written)", markup=False)
        out.print(plan.files["promoted.yaml"], markup=False, end="")
