"""LoRA adapters on the emulator, with the real operator: the rendered list (ConfigMap) and engine
flags; the real adapter agent (against a loopback engine with vLLM's LoRA endpoints, its folders in a
temporary model cache) reports on the adapters Lease as a model pod's agent does, and the operator
turns the reports into `status.model.adapters` and Events: an adapter Loaded, a bad one (its files
say a rank over the maximum) Failed with the reason; an adapter removed from the spec changes the
ConfigMap and not the model's pod template, is unloaded by the agent and leaves the status.
Not covered here: the kubelet's refresh of the mounted ConfigMap (the agent reads the file the test
writes from the ConfigMap) and RBAC enforcement of the agents' Role (the emulator enforces none; the
render test checks its one rule)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aistack.api.adapters import LEASE_COMPONENT
from aistack.runtime.engine.adapter_agent import AdapterAgent
from aistack.runtime.engine.adapter_report import LeaseWriter
from aistack.testing.cluster import Cluster, wait_for
from aistack.testing.openai_server import run_openai_server

BASE = "Qwen/Qwen2.5-0.5B-Instruct"


def lora_stack(namespace: str, adapters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack",
            "metadata": {"name": "tuned", "namespace": namespace},
            "spec": {"model": {"provider": "vllm", "name": BASE, "vllm": {
                "lora": {"maxRank": 16, "maxAdapters": 4}, "adapters": adapters}}}}


def peft_folder(path: Path, rank: int) -> None:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": rank}))
    (path / "adapter_model.safetensors").write_bytes(b"\0" * 32)


def adapters_status(cluster: Cluster, namespace: str) -> list[dict[str, Any]] | None:
    stack = cluster.stack(namespace, "tuned") or {}
    return ((stack.get("status") or {}).get("model") or {}).get("adapters")


def test_agent_reports_become_status_and_events_and_a_removal_restarts_nothing(
        cluster: Cluster, operator: Any, namespace: str, tmp_path: Path) -> None:
    root = tmp_path / "model-cache"
    peft_folder(root / "adapters" / "sql", rank=8)
    peft_folder(root / "adapters" / "wide", rank=64)
    cluster.apply_stack(lora_stack(namespace, [{"name": "sql", "source": "adapters/sql"},
                                               {"name": "wide", "source": "adapters/wide"}]))
    config_map = wait_for(lambda: cluster.emulator.find("configmaps", namespace, "tuned-adapters"),
                          what="the adapter list's ConfigMap")
    deployment = wait_for(lambda: cluster.emulator.find("deployments", namespace, "tuned-model"),
                          what="the model's Deployment")
    template = deployment["spec"]["template"]
    vllm = template["spec"]["containers"][0]
    assert vllm["args"][vllm["args"].index("--enable-lora"):] == [
        "--enable-lora", "--max-lora-rank", "16", "--max-cpu-loras", "4", "--max-loras", "4"]
    assert wait_for(lambda: cluster.emulator.find("leases", namespace, f"tuned-{LEASE_COMPONENT}"),
                    what="the adapters Lease")
    wait_for(lambda: adapters_status(cluster, namespace) == [
        {"name": "sql", "phase": "Pending", "replicas": 0},
        {"name": "wide", "phase": "Pending", "replicas": 0}],
        what="both Pending before any report")

    listing = tmp_path / "adapters.json"
    listing.write_text(config_map["data"]["adapters.json"])
    with run_openai_server(models=[BASE]) as engine:
        writer = LeaseWriter(api=cluster.thread.url, namespace=namespace, lease=f"tuned-{LEASE_COMPONENT}",
                             pod="tuned-model-7d9f-abcde", token_dir=tmp_path / "no-token")
        agent = AdapterAgent(config=listing, engine_url=engine.base_url, root=str(root),
                             publish=writer.publish)
        try:
            agent.sync()
            expected = [{"name": "sql", "phase": "Loaded", "replicas": 1},
                        {"name": "wide", "phase": "Failed", "replicas": 0,
                         "reason": "rank 64 (adapter_config.json) is greater than lora.maxRank (16) "
                                   "(pod tuned-model-7d9f-abcde)"}]
            wait_for(lambda: adapters_status(cluster, namespace) == expected,
                     what="Loaded and Failed in status")
            wait_for(lambda: cluster.events(namespace, "AdapterLoaded"), what="an AdapterLoaded Event")
            failed = wait_for(lambda: cluster.events(namespace, "AdapterFailed"),
                              what="an AdapterFailed Event")
            assert failed[0]["type"] == "Warning" and "rank 64" in failed[0]["message"]
            assert engine.server.options.loras == {"sql": f"{root}/adapters/sql"}

            cluster.kube.patch(*_stack_ref(namespace), {"spec": {"model": {"vllm": {"adapters": [
                {"name": "sql", "source": "adapters/sql"}]}}}})
            wait_for(lambda: "wide" not in (cluster.emulator.find("configmaps", namespace, "tuned-adapters")
                                            or {})["data"]["adapters.json"], what="the list without wide")
            after = cluster.emulator.find("deployments", namespace, "tuned-model")
            assert after is not None and after["spec"]["template"] == template  # no pod restarted
            listing.write_text(cluster.emulator.find("configmaps", namespace, "tuned-adapters")["data"]
                               ["adapters.json"])  # what the kubelet does to the mounted file
            agent.sync()
            wait_for(lambda: adapters_status(cluster, namespace) == [expected[0]],
                     what="wide gone from status")
            assert engine.server.options.loras == {"sql": f"{root}/adapters/sql"}
            assert len(cluster.events(namespace, "AdapterLoaded")) == 1  # no Event without a change
        finally:
            agent.close()
            writer.close()


def _stack_ref(namespace: str) -> tuple[Any, str, str]:
    from aistack.operator.kube import AISTACK

    return AISTACK, namespace, "tuned"
