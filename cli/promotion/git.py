"""The few git operations a promotion needs, through the `git` binary the user already has."""

from __future__ import annotations

import subprocess
from pathlib import Path


class GitError(RuntimeError):
    """git refused or the repository is not in a state to promote from."""


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise GitError("git is not installed; promotion records every change as a git commit") from None
    if done.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def repo_root(path: Path) -> Path:
    """The top of the work tree holding `path`."""
    if not path.is_dir():
        raise GitError(f"{path} is not a folder")
    try:
        return Path(_git(path, "rev-parse", "--show-toplevel").strip())
    except GitError:
        raise GitError(f"{path} is not inside a git repository; promotion records each change as a commit "
                       f"(run `git init` and commit the scaffold first)") from None


def dirty_paths(root: Path) -> list[str]:
    """Changed, staged or untracked paths (what `git status --porcelain` lists)."""
    return [line[3:] for line in _git(root, "status", "--porcelain",
                                      "--untracked-files=all").splitlines() if line]


def commit(root: Path, *, paths: list[Path], message: str) -> str:
    """Stage exactly `paths` (additions and deletions) and commit them; return the commit id."""
    rel = [str(p.resolve().relative_to(root.resolve())) for p in paths]
    _git(root, "add", "--all", "--", *rel)
    _git(root, "commit", "--quiet", "-m", message, "--", *rel)
    return _git(root, "rev-parse", "HEAD").strip()


def head(root: Path) -> str:
    return _git(root, "rev-parse", "HEAD").strip()
