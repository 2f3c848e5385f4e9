"""Every distribution an image installs is pinned in constraints.txt.

What each image's final stage installs, worked out without building it: the venv's own seeds
(python -m venv of the base image's Python), each `pip install` of the Dockerfile (torch, the
extra's requirements from images/requirements.py) with the dependencies they pull, taken from
the metadata of this dev install (which holds every extra), less what the Dockerfile uninstalls.
A dependency with no pin is resolved to whatever is newest on the day of the build (the runtime
image took setuptools 84.2.1 because torch requires setuptools>=77.0.3 and nothing pinned it).
tests/containers/test_images.py checks the same in the built images.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
IMAGES = ("operator", "runtime")
# What `python -m venv` puts into a venv, by the Python's version (ensurepip dropped setuptools in 3.12).
VENV_SEEDS = {(3, 11): ("pip", "setuptools"), (3, 12): ("pip",)}
IMAGE_PLATFORM = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                  "os_name": "posix", "implementation_name": "cpython"}


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def final_stage_commands(image: str) -> tuple[str, list[str]]:
    """The base image and the shell commands of the Dockerfile's last stage, one per `&&` step."""
    text = (REPO / "images" / image / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.MULTILINE)
    assert base, f"images/{image}/Dockerfile: no ARG BASE_IMAGE default"
    last_stage = re.split(r"^FROM ", text, flags=re.MULTILINE)[-1]
    logical = re.sub(r"\\\n", " ", last_stage)
    runs = [line[len("RUN "):] for line in logical.splitlines() if line.startswith("RUN ")]
    return base.group(1), [step.strip() for run in runs for step in run.split("&&")]


def the_extra(image: str) -> str:
    text = (REPO / "images" / image / "Dockerfile").read_text(encoding="utf-8")
    found = re.search(r"python requirements\.py pyproject\.toml (\S+)", text)
    assert found, f"images/{image}/Dockerfile: no requirements.py line"
    return found.group(1)


def extra_requirements(extra: str) -> list[str]:
    spec = importlib.util.spec_from_file_location("image_requirements", REPO / "images" / "requirements.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(module.requirements(project=project, extra=extra))


def image_installs(image: str) -> tuple[set[str], list[str]]:
    """The distributions the image's venv ends with, and each `pip install` lacking `-c constraints.txt`."""
    base, commands = final_stage_commands(image)
    python = tuple(int(p) for p in re.search(r"python:(\d+)\.(\d+)", base).groups())  # type: ignore[union-attr]
    installed = {canonicalize_name(n) for n in VENV_SEEDS[python]}  # type: ignore[index]
    unconstrained = []
    for command in commands:
        words = command.split()
        if not words or not words[0].startswith("/opt/aistack/bin/pip") or len(words) < 2:
            continue
        if words[1] == "uninstall":
            installed -= {canonicalize_name(w) for w in words[2:] if not w.startswith("-")}
            continue
        args, i, reqs = words[2:], 0, []
        while i < len(args):
            if args[i] in ("-c", "-r", "--index-url", "--extra-index-url", "-i"):
                if args[i] == "-r":
                    reqs += extra_requirements(the_extra(image))
                i += 2
                continue
            if not args[i].startswith("-"):
                reqs.append(args[i])
            i += 1
        if "-c constraints.txt" not in command and not all("==" in r for r in reqs):
            unconstrained.append(command)
        installed |= closure(reqs)
    return installed, unconstrained


def closure(requirements: list[str]) -> set[str]:
    """The requirements and everything they pull, by the installed metadata, markers evaluated for
    the image's platform (with the extras asked of each distribution)."""
    environment = {**default_environment(), **IMAGE_PLATFORM}
    seen: dict[str, set[str]] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | extras
        for line in importlib.metadata.requires(name) or []:
            dep = Requirement(line)
            if dep.marker is None or any(dep.marker.evaluate({**environment, "extra": e})
                                         for e in ("", *seen[name])):
                todo.append(dep)
    return set(seen)


@pytest.mark.parametrize("image", IMAGES)
def test_every_distribution_an_image_installs_is_pinned(image: str) -> None:
    pins = constraint_pins()
    installs, unconstrained = image_installs(image)
    assert unconstrained == [], f"images/{image}/Dockerfile installs without -c constraints.txt"
    assert sorted(installs - set(pins)) == [], f"images/{image}: installed but not pinned in constraints.txt"
    for name in sorted(installs):
        installed = importlib.metadata.version(name).split("+", 1)[0]  # torch's +cpu
        assert installed == pins[name], f"{name}: installed {installed}, constraints.txt pins {pins[name]}"


def test_the_runtime_image_takes_setuptools_from_a_pin() -> None:
    """torch requires setuptools (>=77.0.3) and the runtime image keeps it: pinned, not the day's newest."""
    installs, _ = image_installs("runtime")
    assert "setuptools" in installs and "torch" in installs
    assert "setuptools" not in image_installs("operator")[0], "the operator image uninstalls it"
    assert constraint_pins()["setuptools"] == importlib.metadata.version("setuptools")
