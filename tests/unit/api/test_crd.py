"""The generated CRD: in sync with the models, a valid structural v1 CRD, and enforcing in the
API server (schema + CEL) what pydantic enforces in the CLI and the operator.

No API server can run here, so acceptance is checked three ways: kubernetes-validate against
the apiextensions.k8s.io/v1 OpenAPI schema, our own check of the structural-schema rules the
API server applies, and the CEL rules evaluated with cel-python after applying the schema's
defaults (as the API server does before running them). What this cannot show: the API
server's CEL cost estimation and RE2 quirks in patterns.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import celpy
import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft4Validator
from pydantic import ValidationError

from aistack.api.crd import CRD_FILE, build_crd, crd_yaml
from aistack.api.errors import field_errors
from aistack.api.manifests import ManifestError, parse_stack
from aistack.api.v1alpha1 import AIStack
from aistack.testing.crd_rules import cel_rules, failed_cel_messages, schema, walk

ROOT = Path(__file__).resolve().parents[3]
INVALID = Path(__file__).parent / "invalid"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_committed_crd_matches_the_models() -> None:
    committed = (ROOT / "crds" / CRD_FILE).read_text()
    assert committed == crd_yaml(), (
        "crds/ is out of date with the models in api/: run `python -m aistack.api` and commit crds/"
    )


def test_crd_is_a_valid_apiextensions_v1_crd() -> None:
    assert kubernetes_validate.validate(build_crd(), "1.32", strict=True)


def test_validity_check_can_fail_on_a_json_schema_2020_number_bound() -> None:
    broken = build_crd()
    node = broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    node["properties"]["stage"]["exclusiveMinimum"] = 0
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.32", strict=True)


def test_schema_is_structural() -> None:
    problems = []
    for path, node in walk(schema()):
        where = path or "<root>"
        if "$ref" in node or "$defs" in node:
            problems.append(f"{where}: $ref")
        int_or_string = node.get("x-kubernetes-int-or-string")
        if "type" not in node and not int_or_string and not node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{where}: no type")
        if "anyOf" in node and (not int_or_string
                                or node["anyOf"] != [{"type": "integer"}, {"type": "string"}]):
            problems.append(f"{where}: anyOf other than the int-or-string idiom")
        if "properties" in node and node.get("type") != "object":
            problems.append(f"{where}: properties on a non-object")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{where}: properties and additionalProperties together")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{where}: array without items")
        if any(k in node for k in ("oneOf", "allOf", "not", "nullable")):
            problems.append(f"{where}: keyword the structural rules restrict")
    assert not problems, problems


def test_every_spec_field_has_a_description_for_kubectl_explain() -> None:
    missing = [
        p for p, node in walk(schema()["properties"]["spec"], ".spec")
        if p.count(".") > 1 and "description" not in node and not p.endswith(("[*]", "{*}"))
        and not p.startswith(".spec.orchestration.tools[*].parameters.")
    ]
    assert not missing, missing


def test_names_columns_and_subresources() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert (crd["metadata"]["name"], crd["spec"]["scope"]) == ("aistacks.aistack.dev", "Namespaced")
    assert names["shortNames"] == ["ais"] and "aistack" in names["categories"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.gateway.replicas"
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert {"Model", "Provider", "Stage", "Ready", "Endpoint", "Age"} <= set(columns)
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Ingestion"] == ".status.ingestion.phase"  # with -o wide
    assert columns["Canary"] == ".status.model.canary.weight"
    assert columns["Verdict"] == ".status.model.canary.verdict"


# --- CEL: the API server refuses what pydantic refuses ------------------------------------

def test_every_cel_rule_compiles() -> None:
    env = celpy.Environment()
    rules = cel_rules()
    assert len(rules) >= 10
    for _, rule in rules:
        env.compile(rule["rule"])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_schema_and_cel(path: Path) -> None:
    for manifest in yaml.safe_load_all(path.read_text()):
        errors = [e.message for e in Draft4Validator(schema()).iter_errors(manifest)]
        assert not errors
        assert failed_cel_messages(manifest) == []


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("vllm-zero-gpus", "vLLM needs at least 1 GPU per pod"),
        ("vllm-tp-not-dividing", "tensorParallelSize must divide gpu.count"),
        ("openai-with-gpu", "vllm must not be set with provider 'openai'"),
        ("openai-without-key", "provider 'openai' needs openai.baseUrl and openai.apiKeySecretRef"),
        ("tools-in-pipeline", "tools are only called in mode 'agent'"),
        ("prod-open-gateway", "a production stage (prod, production, prd or live"),
        ("evaluation-without-observability", "evaluation needs observability"),
        ("vectorstore-both", "set either managed or external, not both"),
        ("source-volume-both", "set exactly one of configMap or persistentVolumeClaim"),
        ("source-volume-parent-path", "with a volume, uri must be a relative path"),
        ("autoscaling-min-above-max", "minReplicas must not be greater than maxReplicas"),
        ("autoscaling-with-replicas", "replicas must be unset with autoscaling"),
        ("autoscaling-keda-without-prometheus", "engine 'keda' needs prometheusUrl"),
        ("autoscaling-target-waiting-on-keda", "targetWaiting is only for engine 'builtin'"),
        ("routing-on-openai", "vllm must not be set with provider 'openai'"),
        ("canary-sticky-api-key-without-keys", "stickyBy 'apiKey' needs gateway.apiKeysSecretRef"),
        ("canary-sticky-tenant-without-tenants", "stickyBy 'tenant' needs retrieval.tenantField"),
        ("canary-sticky-header-unnamed", "stickyBy 'header' needs stickyHeader"),
        ("canary-identical", "the canary is identical to the stable model"),
        ("canary-adapter-unknown", "canary.adapter must name an entry of vllm.adapters"),
        ("canary-adapter-on-openai", "canary.adapter are for provider 'vllm'"),
        ("canary-steps-falling", "steps must rise step by step"),
    ],
)
def test_cross_field_rules_are_enforced_by_cel_too(fixture: str, message: str) -> None:
    manifest = yaml.safe_load((INVALID / f"{fixture}.yaml").read_text())
    assert any(message in m for m in failed_cel_messages(manifest))


@pytest.mark.parametrize(("stage", "open_refused"), [
    ("prod", True), ("production", True), ("prod-eu", True), ("eu-live", True), ("prd", True),
    ("preprod", False), ("products", False), ("staging", False), ("dev", False),
])
def test_a_production_stage_is_known_by_its_role_in_models_and_cel(stage: str, open_refused: bool) -> None:
    """Not only a stage named exactly `prod`: `production` ran an open gateway."""
    manifest = yaml.safe_load((INVALID / "prod-open-gateway.yaml").read_text())
    manifest["spec"]["stage"] = stage
    cel = [m for m in failed_cel_messages(manifest) if "apiKeysSecretRef" in m]
    assert bool(cel) == open_refused
    if open_refused:
        with pytest.raises(ManifestError, match=rf"gateway.apiKeysSecretRef: required for stage '{stage}'"):
            parse_stack(manifest)
    else:
        assert parse_stack(manifest).spec.stage == stage


@pytest.mark.parametrize(
    "fixture",
    ["bad-quantity", "bad-secret-name", "rail-on-wrong-side", "retrieval-without-embedder", "missing-model",
     "canary-weight-over-100"],
)
def test_field_rules_are_enforced_by_the_openapi_schema(fixture: str) -> None:
    manifest = yaml.safe_load((INVALID / f"{fixture}.yaml").read_text())
    assert list(Draft4Validator(schema()).iter_errors(manifest))


# --- spec.model.vllm.autoscaling: pydantic and CEL agree ---------------------------------


def autoscaling_manifest(vllm: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s"},
            "spec": {"model": {"provider": "vllm", "name": "Qwen/Qwen2.5-7B-Instruct", "vllm": vllm}}}


def pydantic_errors(doc: dict[str, Any]) -> list[str]:
    try:
        AIStack.model_validate(copy.deepcopy(doc))
    except ValidationError as err:
        return [str(e) for e in field_errors(err)]
    return []


@pytest.mark.parametrize("vllm", [
    {"autoscaling": {"minReplicas": 0, "maxReplicas": 4}},
    {"autoscaling": {"maxReplicas": 1}},
    {"autoscaling": {"engine": "keda", "maxReplicas": 3, "prometheusUrl": "http://prometheus.monitoring:9090"}},
    {"replicas": 0},
    {"replicas": 3},
])
def test_consistent_autoscaling_is_accepted_by_both(vllm: dict[str, Any]) -> None:
    doc = autoscaling_manifest(vllm)
    assert pydantic_errors(doc) == []
    assert failed_cel_messages(doc) == []


@pytest.mark.parametrize(("vllm", "field", "cel"), [
    ({"autoscaling": {"minReplicas": 2, "maxReplicas": 1}}, "spec.model.vllm.autoscaling.minReplicas",
     "minReplicas must not be greater than maxReplicas"),
    ({"replicas": 1, "autoscaling": {"maxReplicas": 3}}, "spec.model.vllm.replicas",
     "replicas must be unset with autoscaling"),
    ({"replicas": 2, "autoscaling": {"minReplicas": 0, "maxReplicas": 3}}, "spec.model.vllm.replicas",
     "replicas must be unset with autoscaling"),
    ({"autoscaling": {"prometheusUrl": "http://p:9090", "maxReplicas": 3}},
     "spec.model.vllm.autoscaling.prometheusUrl", "prometheusUrl is only for engine 'keda'"),
    ({"autoscaling": {"engine": "keda", "maxReplicas": 3}}, "spec.model.vllm.autoscaling.prometheusUrl",
     "engine 'keda' needs prometheusUrl"),
])
def test_contradictory_autoscaling_names_the_field_in_both(vllm: dict[str, Any], field: str,
                                                           cel: str) -> None:
    doc = autoscaling_manifest(vllm)
    assert any(e.startswith(f"{field}:") for e in pydantic_errors(doc)), pydantic_errors(doc)
    assert any(cel in m for m in failed_cel_messages(doc)), failed_cel_messages(doc)


def test_max_replicas_is_required_and_bounds_are_checked() -> None:
    def refused(scaling: dict[str, Any]) -> str:
        return " ".join(pydantic_errors(autoscaling_manifest({"autoscaling": scaling})))

    assert "autoscaling.maxReplicas" in refused({"minReplicas": 0})
    assert "autoscaling.minReplicas" in refused({"minReplicas": -1, "maxReplicas": 2})
    assert "autoscaling.holdSeconds" in refused({"maxReplicas": 2, "holdSeconds": 0})


def test_a_shared_cache_is_sized_for_the_most_replicas() -> None:
    scaling = {"minReplicas": 0, "maxReplicas": 3}
    stack = AIStack.model_validate(autoscaling_manifest({"autoscaling": scaling}))
    vllm = stack.spec.model.vllm
    assert vllm is not None and vllm.most_replicas == 3 and vllm.fixed_replicas == 1
