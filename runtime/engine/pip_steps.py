"""pip runs shared by the project's installer (`tools/install.py`) and the engine's (`aistack engine
install`): where the CPU build of torch comes from, and one pip run with its output in a log.

Standard library only: `tools/install.py` loads this file by path before anything is installed.

torch is the one package that pip cannot be trusted to pick alone: PyPI's Linux `torch` is the
CUDA build (~18 nvidia packages, several GB), and the CPU build `2.13.0+cpu` is served only by
PyTorch's own wheel index. So it comes from the first of a local file pip already knows (checked
with `--no-index`, never waiting on a network), then PyTorch's CPU index with a short timeout.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PIP = "pip==26.3"
TORCH = "torch==2.13.0+cpu"
TORCH_INDEX_URL = "https://download.pytorch.org/whl/cpu"
TORCH_INDEX_ENV = "AISTACK_TORCH_INDEX_URL"
"""A mirror of PyTorch's CPU index, for machines that cannot reach download.pytorch.org."""
# A network step that cannot connect gives up after TIMEOUT_S x (RETRIES + 1) at most.
NETWORK_TIMEOUT_S = "15"
NETWORK_RETRIES = "1"


@dataclass(frozen=True)
class Step:
    """One pip run: what the user is told, and the arguments after `python -m pip`."""

    title: str
    args: tuple[str, ...]
    tolerated: tuple[str, ...] = ()
    """Output line prefixes that do not make a failed exit a failure (known, accepted complaints)."""


def torch_probe(torch: str = TORCH) -> Step:
    """Is the CPU build in a local folder pip is configured with? Never touches a network."""
    return Step(f"looking for a local {torch} wheel",
                ("install", "--dry-run", "--no-index", "--no-deps", torch))


def torch_step(*, local: bool, index_url: str = TORCH_INDEX_URL, torch: str = TORCH) -> Step:
    """Install the CPU build of torch: from the local file pip found, else from PyTorch's index."""
    if local:
        return Step(f"installing {torch} (the CPU build, from a local file)", ("install", torch))
    return Step(f"installing {torch} (the CPU build, from {index_url})",
                ("install", "--extra-index-url", index_url, "--timeout", NETWORK_TIMEOUT_S,
                 "--retries", NETWORK_RETRIES, torch))


def torch_index_url(environ: dict[str, str] | None = None) -> str:
    return (environ if environ is not None else dict(os.environ)).get(TORCH_INDEX_ENV, TORCH_INDEX_URL)


def torch_hint(*, index_url: str) -> str:
    """What to do when PyTorch's index did not serve the CPU build."""
    return (f" PyTorch's CPU index ({index_url}) did not serve it: set {TORCH_INDEX_ENV} to a "
            f"mirror, or put the {TORCH} wheel in a folder and set PIP_FIND_LINKS to it.")


def run_pip(python: Path, step: Step, *, log: Path,
            on_line: Callable[[int, str], None] | None = None) -> int | None:
    """Run `python -m pip *step.args`, appending its output to `log`; `on_line(packages seen, line)`
    for each line. Returns None on success (a tolerated failure included), else pip's exit code."""
    with log.open("a") as out:
        out.write(f"\n$ {python} -m pip {' '.join(step.args)}\n")
        out.flush()
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_PROGRESS_BAR": "off"}
        proc = subprocess.Popen([str(python), "-m", "pip", *step.args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        packages = 0
        untolerated = False
        for line in proc.stdout:
            out.write(line)
            untolerated = untolerated or bool(line.strip() and not line.startswith(step.tolerated or ("\0",)))
            if line.startswith(("Collecting ", "Requirement already satisfied")):
                packages += 1
            if on_line is not None and line.strip():
                on_line(packages, line.strip())
        code = proc.wait()
    if code == 0 or (step.tolerated and not untolerated):
        return None
    return code
