"""Print the requirements of the aistack core plus one extra, read from pyproject.toml.

Used by the image builds to install dependencies in a layer of their own, before the source is
copied, so a code change rebuilds only the small layer that installs the aistack wheel.
Self-references such as `aistack[operator]` in an extra are expanded.

    python images/requirements.py pyproject.toml operator > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib


def requirements(*, project: dict, extra: str) -> list[str]:
    """The core dependencies plus those of `extra` (recursively through self-references)."""
    name = project["name"]
    extras = project.get("optional-dependencies", {})
    seen: set[str] = set()
    out: list[str] = list(project.get("dependencies", []))

    def add(which: str) -> None:
        if which in seen:
            return
        if which not in extras:
            raise SystemExit(f"unknown extra {which!r}; pyproject.toml defines {sorted(extras)}")
        seen.add(which)
        for req in extras[which]:
            self_ref = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", req.strip())
            if self_ref:
                for sub in self_ref.group(1).split(","):
                    add(sub.strip())
            elif req not in out:
                out.append(req)

    add(extra)
    return out


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise SystemExit("usage: requirements.py PYPROJECT EXTRA")
    with open(argv[1], "rb") as f:
        project = tomllib.load(f)["project"]
    print("\n".join(requirements(project=project, extra=argv[2])))


if __name__ == "__main__":
    main(sys.argv)
