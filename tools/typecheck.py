"""Run mypy over the `aistack.*` packages, which live in folders that setuptools maps by name.

`aistack.operator` is the folder `operator/` only through `[tool.setuptools.package-dir]`, and
the editable install reaches it with an import hook that mypy (like every path-based reader)
never runs. So this writes `build/typing/aistack/<name>`, one directory symlink per mapped
folder (read from pyproject.toml and testing/pyproject.toml, so a new mapping needs no edit
here), runs mypy on those packages with `build/typing` as its search path, and prints the
findings with the repo's own paths (`operator/apply.py`, not `build/typing/aistack/...`).
Directory links pick up new modules at once: no reinstall, unlike setuptools' strict editable
mode, whose link tree is per file and written at install time.

Standard library only apart from mypy; the settings (strictness per package, third-party
modules) are in pyproject.toml's [tool.mypy]. Extra arguments go to mypy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TREE = REPO / "build" / "typing"
"""mypy's search path; holds only the `aistack` namespace folder (no __init__.py, like the install)."""
DISTRIBUTIONS = (REPO / "pyproject.toml", REPO / "testing" / "pyproject.toml")


def mapped_folders() -> dict[str, Path]:
    """`aistack.<name>` -> its folder, for every top-level entry of each distribution's package-dir."""
    folders: dict[str, Path] = {}
    for pyproject in DISTRIBUTIONS:
        package_dir = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-dir"]
        for package, folder in package_dir.items():
            parts = package.split(".")
            if len(parts) != 2 or parts[0] != "aistack":
                raise SystemExit(f"{pyproject}: package-dir maps {package!r}; expected aistack.<name>")
            folders[package] = (pyproject.parent / folder).resolve()
    return folders


def link_tree(folders: dict[str, Path]) -> None:
    """Make build/typing/aistack hold exactly one relative directory link per mapped folder."""
    namespace = TREE / "aistack"
    namespace.mkdir(parents=True, exist_ok=True)
    wanted = {package.split(".")[1]: folder for package, folder in folders.items()}
    for entry in namespace.iterdir():
        if entry.name not in wanted or not entry.is_symlink():
            if entry.is_symlink() or entry.is_file():
                entry.unlink()
            else:
                raise SystemExit(f"{entry} is not a link this tool wrote: remove it")
    for name, folder in wanted.items():
        link = namespace / name
        target = os.path.relpath(folder, namespace)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)


def main(argv: list[str]) -> int:
    folders = mapped_folders()
    link_tree(folders)
    packages = [arg for package in sorted(folders) for arg in ("-p", package)]
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
                             *packages, *argv],
                            cwd=REPO, env={**os.environ, "MYPYPATH": str(TREE)},
                            capture_output=True, text=True, check=False)
    prefixes = {f"{TREE.relative_to(REPO)}/aistack/{package.split('.')[1]}/":
                f"{folder.relative_to(REPO)}/" for package, folder in folders.items()}
    for stream, text in ((sys.stdout, result.stdout), (sys.stderr, result.stderr)):
        for line in text.splitlines(keepends=True):
            for prefix, real in prefixes.items():
                if line.startswith(prefix):
                    line = real + line[len(prefix):]
                    break
            stream.write(line)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
