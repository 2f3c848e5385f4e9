"""Stack configuration: every stage file is valid; every bad key fails before any resource,
with a message that names the key."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from aistack.platform.config import ConfigError, config_keys, load_stack_file, parse_config
from aistack.testing.pulumi_mocks import STAGES, Run, run_program, stage_config

ROOT = Path(__file__).resolve().parents[3]


def decoded(stage: str) -> dict[str, Any]:
    return {k: json.loads(v) if v[:1] in "{[" else v for k, v in stage_config(stage, project=ROOT).items()}


def encoded(data: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(encoded(data))
    assert str(info.value).startswith("invalid stack configuration (no resource was declared)")
    return info.value.lines


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_file_is_valid(stage: str) -> None:
    config = parse_config(stage_config(stage, project=ROOT))
    assert config.stage == stage
    assert config.region == "us-west-2"


def test_prod_file_is_the_protected_one() -> None:
    prod = parse_config(stage_config("prod", project=ROOT))
    dev = parse_config(stage_config("dev", project=ROOT))
    assert prod.stores.database.multi_az and prod.stores.database.deletion_protection
    assert not dev.stores.database.multi_az and not dev.stores.database.deletion_protection
    assert {g.capacity_type for g in dev.cluster.gpu_node_groups} == {"SPOT"}


def mutate(stage: str, path: str, value: Any) -> dict[str, Any]:
    """`path` like `aistack:cluster.systemNodes.minSize`; value `...` deletes the key."""
    data = copy.deepcopy(decoded(stage))
    key, *rest = path.split(".")
    if not rest:
        if value is ...:
            del data[key]
        else:
            data[key] = value
        return data
    node = data[key]
    for part in rest[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = rest[-1]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


BAD = [
    # (stage, key path, value, expected error line prefix)
    ("dev", "aistack:cluster", ..., "aistack:cluster: required field is missing"),
    ("dev", "aistack:stage", ..., "aistack:stage: required field is missing"),
    ("dev", "aws:region", ..., "aws:region: required field is missing"),
    ("dev", "aistack:stage", "production", "aistack:stage: Input should be 'dev', 'staging' or 'prod'"),
    ("dev", "aistack:cluster.kubernetesVersion", 1.3,
     "aistack:cluster.kubernetesVersion: Input should be a valid string"),
    ("dev", "aistack:cluster.kubernetesVersion", "v1.33",
     "aistack:cluster.kubernetesVersion: 'v1.33' does not match"),
    ("dev", "aistack:cluster.systemNodes.desiredSize", 5,
     "aistack:cluster.systemNodes.desiredSize: need minSize <= desiredSize <= maxSize"),
    ("dev", "aistack:cluster.systemNodes.minSize", "1",
     "aistack:cluster.systemNodes.minSize: Input should be a valid integer"),
    ("dev", "aistack:cluster.gpuNodeGroups.0.instanceTypes", ["m5.large"],
     "aistack:cluster.gpuNodeGroups[0].instanceTypes: ['m5.large'] are not NVIDIA GPU"),
    ("dev", "aistack:cluster.gpuNodeGroups.0.amiType", "AL2_x86_64",
     "aistack:cluster.gpuNodeGroups[0].amiType: Input should be"),
    ("dev", "aistack:cluster.gpuNodeGroups.0.gpuType", "Nvidia L4",
     "aistack:cluster.gpuNodeGroups[0].gpuType: 'Nvidia L4' does not match"),
    ("dev", "aistack:cluster.gpuNodeGroups", [],
     "aistack:cluster.gpuNodeGroups: List should have at least 1 item"),
    ("dev", "aistack:cluster.gpuNodeGroupz", [],
     "aistack:cluster.gpuNodeGroupz: unknown field; did you mean 'gpuNodeGroups'?"),
    ("dev", "aistack:cluster.publicAccessCidrs", [],
     "aistack:cluster.publicAccessCidrs: required when endpointPublicAccess is true"),
    ("dev", "aistack:network.availabilityZones", ["us-west-2a"],
     "aistack:network.availabilityZones: List should have at least 2 items"),
    ("dev", "aistack:network.availabilityZones", ["us-east-1a", "us-east-1b"],
     "aistack:network.availabilityZones: ['us-east-1a', 'us-east-1b'] are not zones of aws:region"),
    ("dev", "aistack:network.cidr", "10.0.0.0", "aistack:network.cidr: '10.0.0.0' does not match"),
    ("dev", "aistack:network.cidr", "999.1.1.1/16",
     "aistack:network.cidr: '999.1.1.1/16' is not an IPv4 network"),
    ("dev", "aistack:network.cidr", "10.40.0.1/16",
     "aistack:network.cidr: '10.40.0.1/16' has host bits set: the network is 10.40.0.0/16"),
    ("dev", "aistack:network.cidr", "10.40.0.0/99",
     "aistack:network.cidr: '10.40.0.0/99' is not an IPv4 network"),
    ("dev", "aistack:network.cidr", "10.40.0.0/19",
     "aistack:network.cidr: 10.40.0.0/19 is too small for 4 /20"),
    ("dev", "aistack:network.cidr", "10.0.0.0/8", "aistack:network.cidr: 10.0.0.0/8: a VPC is at most a /16"),
    ("dev", "aistack:cluster.publicAccessCidrs", ["203.0.113.7/24"],
     "aistack:cluster.publicAccessCidrs[0]: '203.0.113.7/24' has host bits set"),
    ("dev", "aistack:stores.database.backupRetentionDays", 0,
     "aistack:stores.database.backupRetentionDays: Input should be greater than or equal to 1"),
    ("dev", "aistack:stores.database.multiAZ", True,
     "aistack:stores.database.multiAZ: unknown field; did you mean 'multiAz'?"),
    ("dev", "aistack:operator.replicas", 0,
     "aistack:operator.replicas: Input should be greater than or equal to 1"),
    ("dev", "aistack:clustr", {}, "aistack:clustr: unknown key; did you mean aistack:cluster?"),
    ("prod", "aistack:stores.database.multiAz", False,
     "aistack:stores.database.multiAz: must be true in prod"),
    ("prod", "aistack:stores.database.deletionProtection", False,
     "aistack:stores.database.deletionProtection: must be true in prod"),
    ("prod", "aistack:network.natGateways", "single", "aistack:network.natGateways: must be perAz in prod"),
    ("prod", "aistack:cluster.gpuNodeGroups.1.capacityType", "SPOT",
     "aistack:cluster.gpuNodeGroups[1].capacityType: SPOT is refused in prod"),
    ("prod", "aistack:cluster.publicAccessCidrs", ["0.0.0.0/0"],
     "aistack:cluster.publicAccessCidrs: must not contain 0.0.0.0/0 in prod"),
]


@pytest.mark.parametrize(("stage", "path", "value", "expected"), BAD,
                         ids=[f"{b[0]}:{b[1]}={b[2]!r}" for b in BAD])
def test_bad_key_is_named_in_the_error(stage: str, path: str, value: Any, expected: str) -> None:
    lines = errors_of(mutate(stage, path, value))
    assert any(line.startswith(expected) for line in lines), lines


def test_duplicate_gpu_group_names_are_refused() -> None:
    data = decoded("prod")
    data["aistack:cluster"]["gpuNodeGroups"][1]["name"] = "l4"
    assert any(line.startswith("aistack:cluster.gpuNodeGroups: names must be unique")
               for line in errors_of(data))


def test_config_that_is_not_json_is_named() -> None:
    raw = stage_config("dev", project=ROOT) | {"aistack:network": "{availabilityZones: [a"}
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.lines[0].startswith("aistack:network: not valid JSON")


def test_every_broken_key_is_reported_at_once() -> None:
    data = mutate("prod", "aistack:stores.database.backupRetentionDays", 0)
    data["aistack:cluster"]["kubernetesVersion"] = 1.3
    data["aistack:clustr"] = {}
    lines = errors_of(data)
    assert [line.split(":")[1].split(" ")[0] for line in lines] == [
        "clustr", "cluster.kubernetesVersion", "stores.database.backupRetentionDays"
    ]


@pytest.mark.parametrize(
    ("path", "value"),
    [("aistack:cluster", ...), ("aistack:cluster.gpuNodeGroups.0.instanceTypes", ["t3.large"]),
     ("aistack:clustr", {})],
)
def test_program_declares_nothing_when_config_is_bad(path: str, value: Any) -> None:
    run = Run()
    with pytest.raises(ConfigError):
        run_program(encoded(mutate("dev", path, value)), stack="dev", project=ROOT, run=run)
    assert run.resources == []


def test_stack_file_must_be_a_valid_aistack(tmp_path: Path) -> None:
    bad = tmp_path / "stack.yaml"
    bad.write_text("apiVersion: aistack.dev/v1alpha1\nkind: AIStack\nmetadata: {name: x}\nspec: {}\n")
    with pytest.raises(ConfigError) as info:
        load_stack_file(bad, workload_namespace="aistack")
    assert info.value.lines[0].startswith("aistack:operator.stackFile: ")
    assert "spec.model" in str(info.value)


def test_stack_file_in_another_namespace_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_stack_file(ROOT / "examples" / "production.yaml", workload_namespace="aistack")
    assert "namespace 'ai-prod'" in info.value.lines[0] and "stores.workloadNamespace" in info.value.lines[0]


def test_bad_stack_file_stops_the_program_before_any_resource() -> None:
    run = Run()
    data = mutate("dev", "aistack:operator.stackFile", "examples/production.yaml")
    with pytest.raises(ConfigError):
        run_program(encoded(data), stack="dev", project=ROOT, run=run)
    assert run.resources == []


def test_readme_documents_every_config_key_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text()
    for key, default, _ in config_keys():
        shown = default if default in ("required", "unset") else f"`{default}`"
        assert f"| `{key}` | {shown} |" in readme, f"README lacks the row for {key}"
    assert "pulumi stack init dev" in readme and "pulumi up" in readme
