"""The images build, carry what each part needs and nothing else, and run as the fixed non-root
user with a read-only root filesystem."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aistack.api.conventions import GATEWAY_CONFIG_ENV, GATEWAY_CONFIG_PATH, IMAGE_UID
from aistack.api.images import package_version

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1200)]

# Modules the operator image must not carry: the heavy runtime and platform stacks.
HEAVY = ("torch", "nemoguardrails", "mlflow", "transformers", "sentence_transformers", "fastapi",
         "pulumi", "pulumi_aws")
# Guards on what each image adds to its base (images/README.md says what it is made of): the
# operator measured +154 MB, the runtime +1.36 GB. A heavy dependency slipping into an extra,
# or a trimming step of images/slim.py silently doing nothing, trips them.
OPERATOR_MAX_ADDED_BYTES = 180_000_000
RUNTIME_MAX_ADDED_BYTES = 1_500_000_000
# The full MLflow server stack: the runtime image carries the tracing client (mlflow-skinny).
MLFLOW_SERVER_ONLY = ("flask", "sqlalchemy", "alembic", "pyarrow", "matplotlib", "gunicorn")

TRIMMED = """
import json, os, struct, sys

def has_symtab(path):
    # 64-bit little-endian ELF: is there a section named .symtab (what strip removes)?
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\\x7fELF" or head[4] != 2:
            return False
        shoff, = struct.unpack_from("<Q", head, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 0x3A)
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        sections = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(shnum)]
        names_at, names_size = sections[shstrndx][4], sections[shstrndx][5]
        f.seek(names_at)
        names = f.read(names_size)
    return any(names[s[0]:names.index(b"\\0", s[0])] == b".symtab" for s in sections)

site = next(p for p in sys.path if p.endswith("site-packages"))
tests_dirs, unstripped, sources, compiled = [], [], 0, 0
for root, dirs, files in os.walk(site):
    tests_dirs += [os.path.join(root, d) for d in dirs if d == "tests"]
    sources += sum(f.endswith(".py") for f in files)
    compiled += sum(f.endswith(".pyc") for f in files)
    vendored = any(p.endswith(".libs") for p in root.split(os.sep))
    unstripped += [os.path.join(root, f) for f in files
                   if (f.endswith(".so") or ".so." in f) and not vendored
                   and has_symtab(os.path.join(root, f))]
print(json.dumps({"tests_dirs": tests_dirs, "unstripped": unstripped, "sources": sources,
                  "compiled": compiled}))
"""

NO_BUILD_LEFTOVERS = """
import json, os, shutil, importlib.util
print(json.dumps({
    "tools": [t for t in ("gcc", "cc", "make", "git") if shutil.which(t)],
    "venv_pip": os.path.exists("/opt/aistack/bin/pip") or importlib.util.find_spec("pip") is not None,
    "paths": [p for p in ("/src", "/root/.cache", "/tmp/requirements.txt") if os.path.exists(p)],
}))
"""

# The test harness is `aistack.testing`, a distribution of its own (testing/pyproject.toml) that
# the images never install: neither it, its files, nor its own dependency kmock may be there.
NO_TEST_HARNESS = """
import json, os, sys, importlib.util, importlib.metadata as m
try:
    m.distribution("aistack-testing")
    installed = True
except m.PackageNotFoundError:
    installed = False
site = next(p for p in sys.path if p.endswith("site-packages"))
files = [os.path.join(root, f) for root, _, names in os.walk(os.path.join(site, "aistack")) for f in names
         if "testing" in root.split(os.sep) or f.startswith(("emulator", "openai_server", "pulumi_mocks"))]
print(json.dumps({"importable": importlib.util.find_spec("aistack.testing") is not None,
                  "distribution": installed, "files": files,
                  "kmock": importlib.util.find_spec("kmock") is not None}))
"""


@pytest.mark.parametrize("component", ["operator", "runtime"])
def test_images_carry_no_test_harness(component, request, engine) -> None:
    found = json.loads(engine.python(request.getfixturevalue(f"{component}_image"), NO_TEST_HARNESS))
    assert found == {"importable": False, "distribution": False, "files": [], "kmock": False}


@pytest.mark.parametrize("component", ["operator", "runtime"])
def test_images_run_as_the_fixed_non_root_user(component, request, engine) -> None:
    image = request.getfixturevalue(f"{component}_image")
    assert engine.inspect(image)["Config"]["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert engine.python(image, "import os; print(os.getuid(), os.getgid())") == f"{IMAGE_UID} {IMAGE_UID}"


@pytest.mark.parametrize("component", ["operator", "runtime"])
def test_images_carry_oci_labels_of_this_build(component, request, engine) -> None:
    labels = engine.inspect(request.getfixturevalue(f"{component}_image"))["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == package_version()
    assert labels["org.opencontainers.image.revision"] == engine.revision()
    assert labels["org.opencontainers.image.source"].startswith("https://github.com/")
    assert labels["org.opencontainers.image.title"] == f"aistack-{component}"


@pytest.mark.parametrize("component", ["operator", "runtime"])
def test_final_stage_has_no_build_tools_sources_or_caches(component, request, engine) -> None:
    found = json.loads(engine.python(request.getfixturevalue(f"{component}_image"), NO_BUILD_LEFTOVERS))
    assert found == {"tools": [], "venv_pip": False, "paths": []}


def test_operator_image_carries_the_operator_extra_only(operator_image, engine) -> None:
    result = json.loads(engine.python(operator_image, (
        "import json, importlib.util as u\n"
        f"heavy = [m for m in {HEAVY!r} if u.find_spec(m)]\n"
        "import kopf, kubernetes, qdrant_client, aistack.api.v1alpha1\n"
        "from importlib.metadata import version\n"
        "print(json.dumps({'heavy': heavy, 'aistack': version('aistack')}))")))
    assert result == {"heavy": [], "aistack": package_version()}


@pytest.mark.parametrize(("component", "limit"), [("operator", OPERATOR_MAX_ADDED_BYTES),
                                                  ("runtime", RUNTIME_MAX_ADDED_BYTES)])
def test_image_adds_no_more_than_measured_to_its_base(component, limit, request, engine, base_image) -> None:
    added = engine.inspect(
        request.getfixturevalue(f"{component}_image"))["Size"] - engine.inspect(base_image)["Size"]
    assert 0 < added <= limit, (
        f"{component} adds {added / 1e6:.0f} MB to its base (limit {limit / 1e6:.0f} MB)")


@pytest.mark.parametrize("component", ["operator", "runtime"])
def test_venv_is_trimmed(component, request, engine) -> None:
    """images/slim.py ran: no test suites, stripped extension modules, bytecode only where imported."""
    found = json.loads(engine.python(request.getfixturevalue(f"{component}_image"), TRIMMED))
    assert found["tests_dirs"] == []
    assert found["unstripped"] == [], "extension modules with a symbol table"
    assert 0 < found["compiled"] < found["sources"] / 2


INSTALLED = """
import json, importlib.metadata as m
print(json.dumps({d.metadata["Name"]: d.version for d in m.distributions()}))
"""


@pytest.mark.parametrize("component", ["operator", "runtime"])
def test_every_installed_distribution_has_its_pinned_version(component, request, engine) -> None:
    """What the image holds against constraints.txt (the runtime image once took setuptools 84.2.1:
    torch needs it and nothing pinned it). tests/unit/test_image_pins.py checks the same from the
    Dockerfiles without building."""
    pins = {}
    for line in (Path(__file__).resolve().parents[2] / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    installed = json.loads(engine.python(request.getfixturevalue(f"{component}_image"), INSTALLED))
    found = {re.sub(r"[-_.]+", "-", name).lower(): version.split("+", 1)[0]  # torch's +cpu
             for name, version in installed.items() if name != "aistack"}
    assert {n: v for n, v in found.items() if pins.get(n) != v} == {}, "unpinned or not the pinned version"


def test_runtime_image_has_cpu_torch_and_the_guardrails_server(runtime_image, engine) -> None:
    result = json.loads(engine.python(runtime_image, (
        "import json, shutil, torch, nemoguardrails, fastapi, uvicorn, openai\n"
        "print(json.dumps({'cuda': torch.version.cuda, 'nemoguardrails': shutil.which('nemoguardrails')}))")))
    assert result == {"cuda": None, "nemoguardrails": "/opt/aistack/bin/nemoguardrails"}


def test_runtime_image_has_the_mlflow_client_not_the_server(runtime_image, engine) -> None:
    """Pods export traces (aistack.runtime.tracing.export) and evaluation runs (log_table needs
    pandas) to a tracking server; the server stack itself stays out."""
    result = json.loads(engine.python(runtime_image, (
        "import json, importlib.util as u, importlib.metadata as m\n"
        "import mlflow, pandas, aistack.runtime.tracing.export, aistack.runtime.evaluation.tracking\n"
        "from mlflow.tracking import MlflowClient\n"
        "dists = {d.metadata['Name'].lower() for d in m.distributions()}\n"
        f"print(json.dumps({{'server': [p for p in {MLFLOW_SERVER_ONLY!r} if u.find_spec(p)],\n"
        "    'dists': sorted(d for d in dists if d.startswith('mlflow')),\n"
        "    'api': all(hasattr(mlflow, f) for f in "
        "('start_span_no_context', 'log_table', 'start_run'))}))")))
    assert result == {"server": [], "dists": ["mlflow-skinny"], "api": True}
    env = dict(item.split("=", 1) for item in engine.inspect(runtime_image)["Config"]["Env"])
    assert env[GATEWAY_CONFIG_ENV] == GATEWAY_CONFIG_PATH
