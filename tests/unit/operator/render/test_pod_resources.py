"""Every rendered pod has CPU and memory requests and a memory limit, and none mounts a
Kubernetes API token: no aistack workload calls the API (issue 18, item 7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aistack.api import resources as default_resources
from aistack.api.manifests import load_stack
from aistack.api.types import Resources, quantity_value
from aistack.operator.render import render

EXAMPLES = sorted((Path(__file__).resolve().parents[4] / "examples").glob("*.yaml"))
POD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob")


def pods(manifests: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{m['kind']}/{m['metadata']['name']}", m["spec"]["template"]["spec"])
            for m in manifests if m["kind"] in POD_KINDS]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_pod_of_every_example_has_requests_a_memory_limit_and_no_api_token(path: Path) -> None:
    rendered = render(load_stack(path)).manifests
    found = pods(rendered)
    assert found, f"{path.name} renders no pod"
    kinds = {m["kind"] for m in rendered}
    assert kinds & set(POD_KINDS) <= {"Deployment", "StatefulSet", "Job"}, "a new pod kind: test it here"
    for name, pod in found:
        assert pod.get("automountServiceAccountToken") is False, f"{name} mounts an API token"
        for container in [*pod["containers"], *pod.get("initContainers", [])]:
            where = f"{name} container {container['name']}"
            res = container.get("resources", {})
            requests, limits = res.get("requests", {}), res.get("limits", {})
            assert {"cpu", "memory"} <= set(requests), f"{where}: requests {requests}"
            assert "memory" in limits, f"{where}: no memory limit"
            assert quantity_value(limits["memory"]) >= quantity_value(requests["memory"]), where


def test_the_production_example_renders_every_kind_of_pod() -> None:
    """So the test above covers Qdrant, the sidecar, MLflow, vLLM and both Jobs."""
    names = {name.split("/")[1].removeprefix("support-copilot-").split("-")[0]
             for name, _ in pods(render(load_stack(EXAMPLES[[p.name for p in EXAMPLES].index(
                 "production.yaml")])).manifests)}
    assert names == {"vector", "gateway", "mlflow", "model", "eval", "ingest"}


def containers(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c["resources"] for _, pod in pods(manifests) for c in pod["containers"]}


def test_defaults_fill_what_the_spec_leaves_out_and_the_spec_wins(make_stack) -> None:
    plain = containers(render(make_stack("rag")).manifests)
    assert plain["qdrant"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    assert plain["mlflow"] == {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}
    assert plain["guardrails"] == {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert plain["ingest"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    custom = containers(render(make_stack("production", {"spec": {
        "retrieval": {"vectorStore": {"managed": {"resources": {"requests": {"memory": "8Gi"}}}},
                      "ingestionResources": {"requests": {"cpu": "2"}, "limits": {"memory": "6Gi"}}},
        "observability": {"mlflow": {"managed": {"resources": {"limits": {"memory": "3Gi", "cpu": "1"}}}}},
        "evaluation": {"resources": {"requests": {"memory": "256Mi"}}},
        "guardrails": {"resources": {"limits": {"memory": "1536Mi"}}},
    }})).manifests)
    # a request above the default limit lifts the limit to it (never a limit below the request)
    assert custom["qdrant"] == {"requests": {"cpu": "1", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}
    assert custom["ingest"] == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "6Gi"}}
    assert custom["mlflow"] == {"requests": {"cpu": "250m", "memory": "512Mi"},
                                "limits": {"cpu": "1", "memory": "3Gi"}}
    assert custom["eval"] == {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}
    assert custom["guardrails"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                    "limits": {"memory": "1536Mi"}}
    assert custom["vllm"]["limits"] == {"memory": "32Gi", "nvidia.com/gpu": "1"}


def test_with_defaults_keeps_every_key_the_spec_sets() -> None:
    spec = Resources(requests={"ephemeral-storage": "1Gi", "cpu": "3"}, limits={"cpu": "4"})
    out = default_resources.with_defaults(spec, default_resources.GATEWAY)
    assert out.requests == {"cpu": "3", "memory": "1Gi", "ephemeral-storage": "1Gi"}
    assert out.limits == {"cpu": "4", "memory": "2Gi"}
