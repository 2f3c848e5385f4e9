"""The model's adapters in the rendered manifests: the list in a ConfigMap the agent sidecar reads,
LoRA flags and the runtime endpoints on the engine, and a pod template that adding or removing an
adapter leaves unchanged (no engine restart)."""

from __future__ import annotations

import json
from typing import Any

from aistack.api.adapters import AdapterList
from aistack.api.v1alpha1 import AIStack
from aistack.operator.render import render


def stack(vllm: dict[str, Any], **spec: Any) -> AIStack:
    return AIStack.model_validate({
        "apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s", "namespace": "ns"},
        "spec": {"model": {"provider": "vllm", "name": "Qwen/Qwen2.5-7B-Instruct", "servedName": "qwen",
                           "vllm": vllm}, **spec}})


def manifests(s: AIStack) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in render(s, version="0.0.0").manifests}


def template(s: AIStack) -> dict[str, Any]:
    return dict(manifests(s)[("Deployment", "s-model")]["spec"]["template"])


ONE = [{"name": "sql", "source": "hf://acme/sql-lora@v3"}]
THREE = [*ONE, {"name": "fr", "source": "s3://acme-adapters/fr"}, {"name": "t", "source": "adapters/t"}]


def test_the_list_is_a_config_map_and_the_agent_a_sidecar() -> None:
    rendered = manifests(stack({"adapters": THREE, "hfTokenSecretRef": {"name": "hf", "key": "token"}}))
    data = rendered[("ConfigMap", "s-adapters")]["data"]
    listing = AdapterList.model_validate(json.loads(data["adapters.json"]))
    assert listing.base == "qwen" and listing.max_rank == 16
    assert [(a.name, a.source) for a in listing.adapters] == [(a["name"], a["source"]) for a in THREE]
    pod = rendered[("Deployment", "s-model")]["spec"]["template"]["spec"]
    vllm, agent = pod["containers"]
    assert {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "1"} in vllm["env"]
    assert agent["name"] == "adapters" and agent["args"][:2] == ["engine", "adapters"]
    assert agent["args"][agent["args"].index("--engine") + 1] == "http://127.0.0.1:8000/v1"
    assert agent["args"][-2:] == ["--token-env", "HF_TOKEN"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in agent["env"]
    mounts = {m["name"]: m for m in agent["volumeMounts"]}
    assert mounts["adapters"] == {"name": "adapters", "mountPath": "/etc/aistack/adapters", "readOnly": True}
    assert "subPath" not in mounts["adapters"]  # a subPath mount is never refreshed by the kubelet
    assert mounts["model-cache"]["mountPath"] == "/model-cache"
    assert {"name": "adapters", "configMap": {"name": "s-adapters"}} in pod["volumes"]
    assert pod["automountServiceAccountToken"] is False


def test_adding_or_removing_an_adapter_changes_the_config_map_not_the_pods() -> None:
    one, three = stack({"adapters": ONE}), stack({"adapters": THREE})
    assert template(one) == template(three)
    assert manifests(one)[("ConfigMap", "s-adapters")] != manifests(three)[("ConfigMap", "s-adapters")]
    kept_on = stack({"lora": {}})  # LoRA on with no adapter: the first one restarts nothing either
    assert template(kept_on) == template(one)


def test_turning_lora_on_changes_the_pods_and_without_it_nothing_is_rendered() -> None:
    plain = stack({})
    assert template(plain) != template(stack({"adapters": ONE}))
    assert ("ConfigMap", "s-adapters") not in manifests(plain)
    assert [c["name"] for c in template(plain)["spec"]["containers"]] == ["vllm"]
    assert template(stack({"adapters": ONE, "lora": {"maxRank": 64}})) != template(stack({"adapters": ONE}))


def test_model_pods_with_lora_read_s3_as_the_gateways_service_account() -> None:
    pod = template(stack({"adapters": THREE}, gateway={"serviceAccountName": "support-s3"}))["spec"]
    assert pod["serviceAccountName"] == "support-s3" and pod["automountServiceAccountToken"] is False
    plain = template(stack({}, gateway={"serviceAccountName": "support-s3"}))
    assert "serviceAccountName" not in plain["spec"]


def test_the_agents_report_on_one_lease_with_one_verb_and_a_token_of_their_own() -> None:
    rendered = manifests(stack({"adapters": ONE}))
    assert rendered[("Lease", "s-model-adapters")]["spec"] == {}
    role = rendered[("Role", "s-model-adapters")]
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "resourceNames": ["s-model-adapters"], "verbs": ["patch"]}]
    binding = rendered[("RoleBinding", "s-model-adapters")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "s-model", "namespace": "ns"}]
    assert rendered[("ServiceAccount", "s-model")]["automountServiceAccountToken"] is False
    pod = rendered[("Deployment", "s-model")]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "s-model" and pod["automountServiceAccountToken"] is False
    vllm, agent = pod["containers"]
    token = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert token in [m["mountPath"] for m in agent["volumeMounts"]]
    assert token not in [m["mountPath"] for m in vllm["volumeMounts"]]  # the engine gets no token
    assert agent["args"][agent["args"].index("--lease") + 1] == "s-model-adapters"
    named = manifests(stack({"adapters": ONE}, gateway={"serviceAccountName": "support-s3"}))
    assert named[("RoleBinding", "s-model-adapters")]["subjects"][0]["name"] == "support-s3"
    assert ("ServiceAccount", "s-model") not in named  # the named account is the user's
    assert not [k for k in manifests(stack({})) if k[0] in ("Role", "RoleBinding") and "adapters" in k[1]]
