"""Trim a freshly installed image venv to what the image runs, in the layer that installed it.

Run by the image builds right after `pip install --no-compile` (see images/README.md):

    python slim.py SITE_PACKAGES [--drop REL_PATH ...] [--import MODULE ...]

1. Deletes every directory named `tests` (the packages' own test suites: numpy, scipy, pandas,
   sklearn, sympy... ~250 MB in the runtime image) and each `--drop` path (parts of a package
   that the image never imports, e.g. the `kubernetes.aio` copy of the client).
2. Strips the symbol tables of the extension modules (`strip --strip-unneeded`, when binutils
   is installed): ~90 MB of libtorch_cpu alone. Libraries that auditwheel vendored into
   `*.libs/` folders are left alone: patchelf rewrote their headers, and strip breaks them
   ("ELF load command address/offset not page-aligned").
3. Writes bytecode only for what the `--import` modules load (their import closure) instead of
   compiling every file: the rest is compiled in memory if ever imported, which costs no more
   than a missing .pyc on a read-only root filesystem does anyway.

Prints the bytes it removed per step, for the build log.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ELF_MAGIC = b"\x7fELF"


def tree_size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def drop_dirs(*, site: Path, extra: list[str]) -> int:
    """Delete the `tests` directories and the `extra` paths (relative to `site`); bytes freed."""
    targets = sorted(p for p in site.rglob("tests") if p.is_dir() and not p.is_symlink())
    for rel in extra:
        path = site / rel
        if not path.exists():
            raise SystemExit(f"--drop {rel}: no such path under {site}; update the Dockerfile")
        targets.append(path)
    freed = 0
    for path in targets:
        if not path.exists():  # inside a tree deleted just before
            continue
        freed += tree_size(path)
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return freed


def extension_modules(site: Path) -> list[Path]:
    """ELF shared objects outside auditwheel's `*.libs` folders."""
    found = []
    for path in site.rglob("*.so*"):
        if not path.is_file() or path.is_symlink() or not (path.name.endswith(".so") or ".so." in path.name):
            continue
        if any(part.endswith(".libs") for part in path.relative_to(site).parts[:-1]):
            continue
        with path.open("rb") as f:
            if f.read(4) == ELF_MAGIC:
                found.append(path)
    return found


def strip(paths: list[Path]) -> int:
    tool = shutil.which("strip")
    if tool is None or not paths:
        return 0
    before = sum(p.stat().st_size for p in paths)
    for start in range(0, len(paths), 200):
        subprocess.run([tool, "--strip-unneeded", *map(str, paths[start:start + 200])], check=True)
    return before - sum(p.stat().st_size for p in paths)


def compile_imports(modules: list[str]) -> None:
    """Import `modules` in a fresh interpreter that writes bytecode for everything it loads."""
    if not modules:
        return
    code = "\n".join(f"import {m}" for m in modules)
    # Some imports write caches or telemetry ids under HOME (onnxruntime: ~/.cache/Microsoft):
    # a throwaway HOME keeps them out of the image.
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "XDG_CACHE_HOME")}
        env.update(HOME=home, HF_HUB_OFFLINE="1")
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=home)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the venv's site-packages")
    parser.add_argument("--drop", action="append", default=[], help="a path under SITE to delete")
    parser.add_argument("--import", dest="modules", action="append", default=[],
                        help="a module whose import closure gets bytecode")
    args = parser.parse_args(argv)
    site = args.site.resolve()
    dropped = drop_dirs(site=site, extra=args.drop)
    stripped = strip(extension_modules(site))
    compile_imports(args.modules)
    print(f"slim: removed {dropped / 1e6:.0f} MB of tests and unused parts, {stripped / 1e6:.0f} MB of "
          f"symbols; bytecode for the import closure of {len(args.modules)} modules")


if __name__ == "__main__":
    main()
