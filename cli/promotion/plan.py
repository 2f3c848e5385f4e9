"""`aistack promote FROM TO`: plan a gated promotion, then write and commit it.

The whole computation runs in a scratch copy of the GitOps folder, so `--dry-run` and every
refusal leave the repository exactly as it was; only an allowed promotion copies the target
overlay back and commits it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aistack.api.config_hash import config_hash
from aistack.api.manifests import ManifestError, parse_stack
from aistack.cli.promotion import git, overlay
from aistack.cli.promotion.fields import Change, combine
from aistack.cli.promotion.gate import Verdict, judge, metrics_lines
from aistack.cli.promotion.kustomize import KustomizeError, Renderer
from aistack.cli.promotion.layout import Layout, LayoutError, effective_stack
from aistack.cli.promotion.runs import RunFinder

class PromotionError(RuntimeError):
    """The promotion cannot even be planned (layout, manifest, git); nothing was changed."""


@dataclass
class Plan:
    """Everything a reviewer (or `--dry-run`) needs to see, and the files to write."""

    source: str
    target: str
    stack: str
    config_hash: str
    target_hash: str
    changes: list[Change]
    reingest: list[str]
    review: list[str]
    verdict: Verdict
    ops: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str | None] = field(default_factory=dict)  # relative to the target overlay

    @property
    def noop(self) -> bool:
        return self.config_hash == self.target_hash and not self.changes

    def commit_message(self) -> str:
        run = self.verdict.run
        lines = [f"promote {self.stack} {self.source} -> {self.target} (config {self.config_hash})", ""]
        if run is not None:
            lines.append(f"Evaluation run {run.run_id} in experiment {run.experiment!r}, "
                         f"finished {run.finished.isoformat(timespec='seconds')}.")
        lines += [f"Thresholds of {self.target}:"] + [f"  {m}" for m in metrics_lines(self.verdict)
                                                      or ["(none)"]]
        lines += ["", "Promotable changes:"] + [f"  {c.describe()}" for c in self.changes]
        if self.reingest:
            lines += ["", f"Re-ingestion needed in {self.target}: " + "; ".join(self.reingest)]
        if self.review:
            lines += ["", "Review:"] + [f"  {r}" for r in self.review]
        lines += ["", f"Aistack-Config-Hash: {self.config_hash}"]
        if run is not None:
            lines.append(f"Aistack-Run-Id: {run.run_id}")
        return "\n".join(lines) + "\n"


def plan(
    *,
    root: Path,
    source: str,
    target: str,
    find_run: RunFinder,
    now: datetime | None = None,
    max_age: timedelta | None = None,
    renderer: Renderer = "auto",
) -> Plan:
    """Compute the promotion in a scratch copy; `find_run(source_stack, target_stack, hash)`."""
    if source == target:
        raise PromotionError(f"FROM and TO are both {source!r}; name two different stages")
    layout = Layout(root)
    try:
        layout.require_stage(source)
        layout.require_stage(target)
        with tempfile.TemporaryDirectory(prefix="aistack-promote-") as scratch:
            work = Layout(Path(scratch) / "gitops")
            shutil.copytree(root, work.root, ignore=shutil.ignore_patterns(".git"))
            try:
                return _plan(work, source=source, target=target, find_run=find_run,
                             now=now or datetime.now(UTC), max_age=max_age, renderer=renderer)
            except (LayoutError, ManifestError, PromotionError, KustomizeError) as err:
                # Name the user's folder, not the scratch copy.
                raise PromotionError(str(err).replace(str(work.root), str(root))) from None
    except LayoutError as err:
        raise PromotionError(str(err)) from None


def _plan(work: Layout, *, source: str, target: str, find_run: RunFinder,
          now: datetime, max_age: timedelta | None, renderer: Renderer) -> Plan:
    source_doc, source_stack = effective_stack(work, source, renderer=renderer)
    target_doc, target_stack = effective_stack(work, target, renderer=renderer)
    if source_stack.name != target_stack.name:
        raise PromotionError(f"stage {source!r} renders AIStack {source_stack.name!r} but {target!r} renders "
                             f"{target_stack.name!r}; promotion moves one stack between stages")
    wanted_hash = config_hash(source_stack.spec)
    combined = combine(source=source_doc["spec"], target=target_doc["spec"])
    try:
        promoted = parse_stack({**target_doc, "spec": combined.spec},
                               source=f"stage {target} after promotion")
    except ManifestError as err:
        raise PromotionError(f"the promoted spec would be invalid in stage {target!r}; "
                             f"fix its stage.yaml first:\n{err}") from None
    if config_hash(promoted.spec) != wanted_hash:
        raise PromotionError(f"internal: the promoted spec of {target!r} hashes to "
                             f"{config_hash(promoted.spec)}, "
                             f"not {wanted_hash}; please report this with both overlays")
    result = Plan(source=source, target=target, stack=source_stack.name, config_hash=wanted_hash,
                  target_hash=config_hash(target_stack.spec), changes=combined.changes,
                  reingest=combined.reingest, review=combined.review,
                  verdict=Verdict(True, f"{target!r} already runs config {wanted_hash}"))
    if result.noop:
        return result
    run = find_run(source_stack, target_stack, wanted_hash)
    result.verdict = judge(run=run, config_hash=wanted_hash, stage=target,
                           evaluation=target_stack.spec.evaluation, now=now, max_age=max_age)
    stage_dir = work.stage_dir(target)
    overlay.without_promoted(stage_dir)
    base_doc, _ = effective_stack(work, target, renderer=renderer)
    result.ops = overlay.json_patch(base_doc["spec"], combined.spec, prefix="/spec")
    touched = overlay.write(stage_dir, ops=result.ops)
    _, rendered = effective_stack(work, target, renderer=renderer)
    if rendered.spec.to_wire() != promoted.spec.to_wire():
        raise PromotionError(f"internal: the written overlay of {target!r} does not render the promoted "
                             "spec; please report this with the overlay")
    result.files = {p.name: (p.read_text(encoding="utf-8") if p.exists() else None) for p in touched}
    return result


def apply(plan_: Plan, *, root: Path) -> str:
    """Copy the planned overlay files into the repository and commit them; return the commit id."""
    stage_dir = Layout(root).stage_dir(plan_.target)
    for name, text in plan_.files.items():
        path = stage_dir / name
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text, encoding="utf-8")
    return git.commit(git.repo_root(root), paths=[stage_dir], message=plan_.commit_message())


def promote(
    *,
    root: Path,
    source: str,
    target: str,
    find_run: RunFinder,
    dry_run: bool = False,
    now: datetime | None = None,
    max_age: timedelta | None = None,
    renderer: Renderer = "auto",
) -> tuple[Plan, str | None]:
    """Plan, and unless refused or dry, commit; returns the plan and the commit id (or None)."""
    repo = git.repo_root(root)
    dirty = git.dirty_paths(repo)
    if dirty and not dry_run:
        shown = ", ".join(dirty[:10]) + (f" and {len(dirty) - 10} more" if len(dirty) > 10 else "")
        raise PromotionError(f"the working tree has uncommitted changes ({shown}); commit or stash them: "
                             "a promotion must start from what is in git")
    result = plan(root=root, source=source, target=target, find_run=find_run, now=now, max_age=max_age,
                  renderer=renderer)
    if dry_run or not result.verdict.allowed or result.noop:
        return result, None
    return result, apply(result, root=root)
