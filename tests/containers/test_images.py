"""The images build, carry what each part needs and nothing else, and run as the fixed non-root
user with a read-only root filesystem."""

from __future__ import annotations

import json

import pytest

from aistack.api.conventions import GATEWAY_CONFIG_ENV, GATEWAY_CONFIG_PATH, IMAGE_UID
from aistack.api.images import package_version

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1200)]

# Modules the operator image must not carry: the heavy runtime and platform stacks.
HEAVY = ("torch", "nemoguardrails", "mlflow", "transformers", "sentence_transformers", "fastapi",
         "pulumi", "pulumi_aws")
# A guard against a heavy dependency slipping into the operator extra (see images/README.md for
# what the size is made of).
OPERATOR_MAX_BYTES = 500_000_000

NO_BUILD_LEFTOVERS = """
import json, os, shutil, importlib.util
print(json.dumps({
    "tools": [t for t in ("gcc", "cc", "make", "git") if shutil.which(t)],
    "venv_pip": os.path.exists("/opt/aistack/bin/pip") or importlib.util.find_spec("pip") is not None,
    "paths": [p for p in ("/src", "/root/.cache", "/tmp/requirements.txt") if os.path.exists(p)],
}))
"""


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
    assert engine.inspect(operator_image)["Size"] <= OPERATOR_MAX_BYTES


def test_runtime_image_has_cpu_torch_and_the_guardrails_server(runtime_image, engine) -> None:
    result = json.loads(engine.python(runtime_image, (
        "import json, shutil, torch, nemoguardrails, fastapi, uvicorn, openai\n"
        "print(json.dumps({'cuda': torch.version.cuda, 'nemoguardrails': shutil.which('nemoguardrails')}))")))
    assert result == {"cuda": None, "nemoguardrails": "/opt/aistack/bin/nemoguardrails"}
    env = dict(item.split("=", 1) for item in engine.inspect(runtime_image)["Config"]["Env"])
    assert env[GATEWAY_CONFIG_ENV] == GATEWAY_CONFIG_PATH
