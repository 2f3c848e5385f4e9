"""The real kubectl against the emulator with the operator running: how users meet aistack.

Skipped where no kubectl binary is installed. The emulator serves no OpenAPI document, so
`apply` runs with `--validate=false`, and no Table responses, so `get` shows NAME and AGE
instead of the CRD's printer columns.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from aistack.testing.cluster import wait_for

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")


@pytest.fixture
def kubectl(cluster, tmp_path):
    def run(*args: str) -> str:
        cmd = [KUBECTL or "kubectl", f"--server={cluster.thread.url}", "--insecure-skip-tls-verify",
               "--token=t",
               f"--cache-dir={tmp_path / 'cache'}", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


def test_kubectl_apply_get_delete(cluster, operator, kubectl) -> None:
    assert "created" in kubectl("apply", "--validate=false", "-f", str(EXAMPLES / "quickstart.yaml"))
    wait_for(lambda: kubectl("get", "aistack", "quickstart", "-o", "jsonpath={.status.phase}") == "Ready",
             what="kubectl sees phase Ready")
    assert "quickstart" in kubectl("get", "ais")
    assert "quickstart-gateway" in kubectl("get", "deployments", "-n", "default")
    assert kubectl("get", "aistack", "quickstart", "-o", "jsonpath={.status.endpoint}") == \
        "http://quickstart-gateway.default.svc.cluster.local:8080/v1"
    # Re-applying the unchanged file is a no-op for the operator.
    assert "unchanged" in kubectl("apply", "--validate=false", "-f", str(EXAMPLES / "quickstart.yaml"))
    kubectl("delete", "aistack", "quickstart", "--wait=false")
    wait_for(lambda: "quickstart" not in kubectl("get", "aistacks", "-o", "name"), what="stack deleted")
    wait_for(lambda: "quickstart-gateway" not in kubectl("get", "deployments", "-o", "name"),
             what="children collected")
