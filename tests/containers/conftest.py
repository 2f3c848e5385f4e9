"""Builds aistack's images once per session with buildah and runs them with podman.

There is no Docker engine or registry in CI: `images/base/build-stand-in.sh` puts a Debian
stand-in for `python:3.11-slim` into local storage first (a no-op where the real image is
present), and `images/containers.conf` selects runc/cgroupfs/ulimits that work on CI hosts.
Builds use `--layers`, so a second session (or a code-only change) reuses the dependency layers.
Every test here is marked `containers` and skipped with the reason when the tools are missing.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
BASE_IMAGE = "docker.io/library/python:3.11-slim"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def missing_tools() -> str | None:
    """Why these tests cannot run here, or None."""
    absent = [tool for tool in ("buildah", "podman") if shutil.which(tool) is None]
    if absent:
        return (f"{' and '.join(absent)} not installed (Debian: apt-get install buildah podman runc "
                "debootstrap; .ci/run does this in CI)")
    if os.geteuid() != 0:
        return "container tests need root (rootful buildah/podman; CI runs as root)"
    return None


def engine_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(IMAGES / "containers.conf")}


def run(*args: str, check: bool = True, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run an engine command; a failure shows its output, which is where the reason is."""
    proc = subprocess.run(args, env=engine_env(), text=True, capture_output=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args[:3])} ... exited {proc.returncode}\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def host_pip_volumes() -> list[str]:
    """Build-time bind mounts that give pip in the build what it has on this host: the CA bundle
    (HTTPS through an intercepting proxy) and, where the host's pip is configured with local
    indexes or wheel folders (an offline mirror, a CPU torch wheel), those config files and the
    folders they name. Nothing mounted at build time is stored in the image."""
    volumes = [f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.exists() else []
    home = Path.home()
    configs = {Path("/etc/pip.conf"): "/etc/pip.conf",
               Path("/etc/xdg/pip/pip.conf"): "/etc/xdg/pip/pip.conf",
               home / ".config/pip/pip.conf": "/root/.config/pip/pip.conf",
               home / ".pip/pip.conf": "/root/.pip/pip.conf"}
    paths: set[Path] = set()
    for conf, target in configs.items():
        if not conf.is_file():
            continue
        volumes.append(f"{conf}:{target}:ro")
        parser = configparser.ConfigParser()
        parser.read(conf)
        for section in parser.sections():
            for key in ("find-links", "extra-index-url", "index-url", "constraint"):
                paths.update(_local_paths(parser.get(section, key, fallback="")))
    paths.update(_local_paths(os.environ.get("PIP_FIND_LINKS", "")))
    return volumes + [f"{p}:{p}:ro" for p in sorted(paths)]


def torch_index_url() -> str:
    """Where the runtime build gets its CPU torch: `AISTACK_TORCH_INDEX_URL` if set; PyPI when
    the host's pip already has the pinned `+cpu` wheel in a local folder (mounted into the build,
    it wins there, and PyPI serves torch's own dependencies); else PyTorch's CPU index."""
    if os.environ.get("AISTACK_TORCH_INDEX_URL"):
        return os.environ["AISTACK_TORCH_INDEX_URL"]
    pin = next((line.strip().split("==", 1)[1] for line in (REPO / "constraints.txt").read_text().splitlines()
                if line.startswith("torch==")), None)
    for volume in host_pip_volumes():
        folder = Path(volume.split(":", 1)[0])
        if pin and folder.is_dir() and any(folder.glob(f"torch-{pin}-*.whl")):
            return "https://pypi.org/simple"
    return PYTORCH_CPU_INDEX


def _local_paths(value: str) -> set[Path]:
    """Existing local paths among the whitespace-separated paths or file:// URLs in `value`."""
    out = set()
    for item in value.split():
        if item.startswith(("/", "file:///")):
            path = Path(item.removeprefix("file://"))
            if path.exists():
                # An index's pages link to files beside it (`../../files/x.whl`): mount its root.
                out.add(path.parent if path.name == "simple" else path)
    return out


@dataclass
class BuildLog:
    """Seconds spent per build step this session, printed at the end (budget: 5 min in CI)."""

    seconds: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="session")
def build_log() -> Iterator[BuildLog]:
    log = BuildLog()
    yield log
    if log.seconds:
        print("\ncontainer build times: " + ", ".join(f"{k} {v:.0f}s" for k, v in log.seconds.items()))


@pytest.fixture(scope="session")
def base_image(engine: Engine, build_log: BuildLog) -> str:
    started = time.monotonic()
    run(str(IMAGES / "base" / "build-stand-in.sh"), BASE_IMAGE, timeout=900)
    build_log.seconds["base"] = time.monotonic() - started
    return BASE_IMAGE


def build(*, component: str, build_log: BuildLog, build_args: dict[str, str]) -> str:
    tag = f"localhost/aistack/{component}:test"
    started = time.monotonic()
    args = ["buildah", "build", "--layers", "-f", str(IMAGES / component / "Dockerfile"), "-t", tag]
    for volume in host_pip_volumes():
        args += ["-v", volume]
    for key, value in build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    run(*args, str(REPO), timeout=1200)
    build_log.seconds[component] = time.monotonic() - started
    return tag


def git_revision() -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, text=True, capture_output=True)
    return proc.stdout.strip() or "unknown"


@pytest.fixture(scope="session")
def image_args(base_image: str) -> dict[str, str]:
    from aistack.api.images import package_version

    return {"BASE_IMAGE": base_image, "VERSION": package_version(), "REVISION": git_revision()}


@pytest.fixture(scope="session")
def operator_image(image_args: dict[str, str], build_log: BuildLog) -> str:
    return build(component="operator", build_log=build_log, build_args=image_args)


@pytest.fixture(scope="session")
def runtime_image(image_args: dict[str, str], build_log: BuildLog) -> str:
    return build(component="runtime", build_log=build_log,
                 build_args={**image_args, "TORCH_INDEX_URL": torch_index_url()})


class Engine:
    """What tests do with images, as a fixture (test modules cannot import this conftest)."""

    run = staticmethod(run)
    revision = staticmethod(git_revision)

    @staticmethod
    def inspect(image: str) -> dict:
        return json.loads(run("podman", "image", "inspect", image).stdout)[0]

    @staticmethod
    def python(image: str, code: str) -> str:
        """`python -c code` in a throwaway container of `image`: its default (non-root) user,
        read-only root, no network."""
        return run("podman", "run", "--rm", "--read-only", "--network", "none", "--entrypoint", "python",
                   image, "-c", code).stdout.strip()


@pytest.fixture(scope="session")
def engine() -> Engine:
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    return Engine()


@pytest.fixture
def free_port():
    """A function giving a loopback port that was free a moment ago."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    return pick


@dataclass
class Container:
    """A detached container; `stop` sends SIGTERM and reports how it ended."""

    name: str

    def logs(self) -> str:
        proc = run("podman", "logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def state(self) -> dict:
        return json.loads(run("podman", "inspect", self.name).stdout)[0]["State"]

    def exec(self, *cmd: str) -> str:
        return run("podman", "exec", self.name, *cmd).stdout

    def stop(self, *, grace: int = 20) -> tuple[int, float]:
        """SIGTERM, wait up to `grace` s, then SIGKILL: (exit code, seconds it took)."""
        started = time.monotonic()
        run("podman", "stop", "--time", str(grace), self.name, check=False)
        return int(self.state()["ExitCode"]), time.monotonic() - started


@pytest.fixture
def start_container() -> Iterator:
    """Start detached containers (read-only root, no capabilities); removed after the test."""
    names: list[str] = []

    def start(image: str, *args: str, options: tuple[str, ...] = ()) -> Container:
        name = f"aistack-test-{os.getpid()}-{len(names)}-{int(time.time() * 1000) % 10**6}"
        names.append(name)
        run("podman", "run", "-d", "--name", name, "--read-only", "--cap-drop=ALL",
            "--security-opt=no-new-privileges", *options, image, *args)
        return Container(name)

    yield start
    for name in names:
        run("podman", "rm", "-f", "--time", "0", name, check=False)
