"""Write a promotion into the target overlay as a JSON 6902 patch (`promoted.yaml`).

The patch is regenerated from scratch on every promotion: the operations that turn "base +
the stage's own patch" into the promoted spec. So the file always says, for a reviewer, how
this stage differs in behaviour from the base, and never grows with history (git has that).
JSON 6902 rather than a merge patch because list fields (rails, tools, extraArgs) and removals
then mean exactly one thing to kustomize, to Argo CD and to aistack's built-in renderer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aistack.cli.promotion.layout import PROMOTED_PATCH
from aistack.api.yamlio import dump

HEADER = (
    "# Written by `aistack promote`: the behaviour this stage was promoted to, as changes to\n"
    "# base + stage.yaml. Regenerated on each promotion; edit stage.yaml, not this file.\n"
)


def json_patch(old: Any, new: Any, *, prefix: str = "") -> list[dict[str, Any]]:
    """Operations turning `old` into `new`: maps recursed into, other values replaced whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[dict[str, Any]] = []
        for key in old:
            if key not in new:
                ops.append({"op": "remove", "path": f"{prefix}/{_escape(key)}"})
        for key, value in new.items():
            path = f"{prefix}/{_escape(key)}"
            if key not in old:
                ops.append({"op": "add", "path": path, "value": value})
            else:
                ops.extend(json_patch(old[key], value, prefix=path))
        return ops
    if old == new:
        return []
    return [{"op": "replace", "path": prefix or "/", "value": new}]


def _escape(key: str) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def write(stage_dir: Path, *, ops: list[dict[str, Any]]) -> list[Path]:
    """Write (or remove) promoted.yaml and point the kustomization at it; return touched files."""
    promoted = stage_dir / PROMOTED_PATCH
    kustomization = stage_dir / "kustomization.yaml"
    current = yaml.safe_load(kustomization.read_text(encoding="utf-8")) or {}
    # Keep whatever else the overlay holds (hand-added patches, a namespace); only ours changes.
    others = [p for p in current.get("patches") or []
              if not (isinstance(p, dict) and p.get("path") == PROMOTED_PATCH)]
    wanted = {**current,
              "patches": others + ([{"path": PROMOTED_PATCH, "target": {"kind": "AIStack"}}] if ops else [])}
    kustomization.write_text(dump(wanted), encoding="utf-8")
    if ops:
        promoted.write_text(HEADER + dump(ops), encoding="utf-8")
    elif promoted.exists():
        promoted.unlink()
    return [kustomization, promoted]


def without_promoted(stage_dir: Path) -> None:
    """Drop our patch from the overlay (in a scratch copy) to render base + stage.yaml only."""
    write(stage_dir, ops=[])
