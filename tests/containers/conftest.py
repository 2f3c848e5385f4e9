"""Builds aistack's images once per session with buildah and runs them with podman.

There is no Docker engine or registry in CI: `images/base/build-stand-in.sh` puts a Debian
stand-in for `python:3.11-slim` into local storage first (a no-op where the real image is
present), and `images/containers.conf` selects runc/cgroupfs/ulimits that work on CI hosts.
Builds use `--layers`, so a second session (or a code-only change) reuses the dependency layers.
Every test here is marked `containers` and skipped with the reason when the tools are missing.
"""

from __future__ import annotations

import configparser
import functools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aistack.runtime.local import ports

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
BASE_IMAGE = "docker.io/library/python:3.11-slim"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def missing_tools() -> str | None:
    """Why these tests cannot run here, or None."""
    absent = [tool for tool in ("buildah", "podman", "runc") if shutil.which(tool) is None]
    if absent:
        return (f"{', '.join(absent)} not installed (`make container-tools` installs them with apt-get as "
                "root; .ci/run does that first)")
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
    the host's pip already has the pinned version's `+cpu` wheel in a local folder (mounted into the build,
    it wins there, and PyPI serves torch's own dependencies); else PyTorch's CPU index."""
    if os.environ.get("AISTACK_TORCH_INDEX_URL"):
        return os.environ["AISTACK_TORCH_INDEX_URL"]
    pin = next((line.strip().split("==", 1)[1] for line in (REPO / "constraints.txt").read_text().splitlines()
                if line.startswith("torch==")), None)
    for volume in host_pip_volumes():
        folder = Path(volume.split(":", 1)[0])
        if pin and folder.is_dir() and any(folder.glob(f"torch-{pin}+cpu-*.whl")):
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
    sizes: dict[str, int] = field(default_factory=dict)

    def report(self) -> str:
        base = self.sizes.get("base")
        sizes = [f"{name} {size / 1e6:.0f} MB" + (f" (+{(size - base) / 1e6:.0f} MB on the base)"
                                                   if base and name != "base" else "")
                 for name, size in self.sizes.items()]
        return ("container build times: " + ", ".join(f"{k} {v:.0f}s" for k, v in self.seconds.items())
                + "\nimage sizes: " + ", ".join(sizes))


BUILD_LOG = pytest.StashKey[BuildLog]()


def image_size(image: str) -> int:
    return int(run("podman", "image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


@pytest.fixture(scope="session")
def build_log(pytestconfig: pytest.Config) -> BuildLog:
    log = BuildLog()
    pytestconfig.stash[BUILD_LOG] = log
    return log


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Build times and image sizes in every run's summary (fixture output would be captured)."""
    log = config.stash.get(BUILD_LOG, None)
    if log is not None and log.seconds:
        terminalreporter.write_sep("-", "container images")
        terminalreporter.write_line(log.report())


@pytest.fixture(scope="session")
def base_image(engine: Engine, build_log: BuildLog) -> str:
    started = time.monotonic()
    proc = run(str(IMAGES / "base" / "build-stand-in.sh"), BASE_IMAGE, timeout=900, check=False)
    if proc.returncode != 0 and shutil.which("debootstrap") is None:
        pytest.skip("no registry answered for python:3.11-slim and debootstrap, which builds the local "
                    "stand-in, is not installed (`make container-tools` installs it)")
    if proc.returncode != 0:
        raise AssertionError(
            f"the base image could not be built:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    build_log.seconds["base"] = time.monotonic() - started
    build_log.sizes["base"] = image_size(BASE_IMAGE)
    return BASE_IMAGE


def build_command(*, component: str, tag: str, build_args: dict[str, str]) -> list[str]:
    args = ["buildah", "build", "--layers", "-f", str(IMAGES / component / "Dockerfile"), "-t", tag]
    for volume in host_pip_volumes():
        args += ["-v", volume]
    for key, value in build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    # buildah (1.28) keys a cached LABEL layer by the instruction's unexpanded text, so a new
    # REVISION alone would keep the previous build's label: the per-build labels are set on
    # the command line too, as CI's metadata actions do (test_lint checks the Dockerfiles' LABELs
    # take them from the build args, which BuildKit expands into its cache key).
    for key in ("VERSION", "REVISION"):
        if key in build_args:
            args += ["--label", f"org.opencontainers.image.{key.lower()}={build_args[key]}"]
    return [*args, str(REPO)]


@functools.cache
def git_revision() -> str:
    """The commit the images are built from, read once: a commit made while the suite runs
    must not make the label test compare against a newer revision."""
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, text=True, capture_output=True)
    return proc.stdout.strip() or "unknown"


@pytest.fixture(scope="session")
def image_args(base_image: str) -> dict[str, str]:
    from aistack.api.images import package_version

    return {"BASE_IMAGE": base_image, "VERSION": package_version(), "REVISION": git_revision()}


@dataclass
class ImageBuilds:
    """The image builds of this session, started together: on 2 cores one build's downloads,
    apt and layer commits overlap the other's CPU work (the runtime image is the long one).
    Layers the two Dockerfiles share (user, wheel) are cached for later builds."""

    args: dict[str, dict[str, str]]
    log: BuildLog
    logs: Path
    running: dict[str, tuple[subprocess.Popen[str], float]] = field(default_factory=dict)
    done: dict[str, str] = field(default_factory=dict)

    def start(self, component: str) -> None:
        if component in self.running or component in self.done:
            return
        tag = f"localhost/aistack/{component}:test"
        with (self.logs / f"{component}.log").open("w") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(build_command(component=component, tag=tag,
                                                  build_args=self.args[component]),
                                    env=engine_env(), text=True, stdout=out, stderr=subprocess.STDOUT)
        self.running[component] = (proc, time.monotonic())

    def wait(self, component: str) -> str:
        if component in self.done:
            return self.done[component]
        self.start(component)
        proc, started = self.running.pop(component)
        try:
            code = proc.wait(timeout=1500)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        output = (self.logs / f"{component}.log").read_text()
        if code != 0:
            raise AssertionError(f"building the {component} image failed ({code}):\n{output[-6000:]}")
        tag = f"localhost/aistack/{component}:test"
        self.log.seconds[component] = time.monotonic() - started
        self.log.sizes[component] = image_size(tag)
        self.done[component] = tag
        return tag


def images_needed(items: list[pytest.Item]) -> list[str]:
    """The images the selected tests use (by fixture, or by a `component` parameter)."""
    needed = []
    for component in ("operator", "runtime"):
        for item in items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            if f"{component}_image" in getattr(
                    item, "fixturenames", ()) or params.get("component") == component:
                needed.append(component)
                break
    return needed


@pytest.fixture(scope="session")
def image_builds(image_args: dict[str, str], build_log: BuildLog, request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageBuilds]:
    builds = ImageBuilds(args={"operator": image_args,
                               "runtime": {**image_args, "TORCH_INDEX_URL": torch_index_url()}},
                         log=build_log, logs=tmp_path_factory.mktemp("image-builds"))
    for component in images_needed(request.session.items):
        builds.start(component)
    yield builds
    for proc, _ in builds.running.values():  # a session that ended before it needed them
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def operator_image(image_builds: ImageBuilds) -> str:
    return image_builds.wait("operator")


@pytest.fixture(scope="session")
def runtime_image(image_builds: ImageBuilds) -> str:
    return image_builds.wait("runtime")


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
    return ports.free_port


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
