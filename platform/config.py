"""The stack configuration (`aistack:*` keys of `Pulumi.<stage>.yaml`) as one pydantic model.

The program reads and validates every key before it declares a single resource, so a typo or
a wrong type fails `pulumi preview` at once with the key's name instead of half a plan, and
unsafe choices for `prod` (single-AZ database, no deletion protection, spot GPUs, a control
plane open to the internet) are refused here rather than discovered in production.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from aistack.api.errors import field_errors
from aistack.api.manifests import ManifestError, load_stack
from aistack.api.rules import RuleCollector, violation
from aistack.api.v1alpha1 import AIStack
from aistack.platform.operator_manifests import DEFAULT_NAMESPACE

PROJECT = "aistack"
Stage = Literal["dev", "staging", "prod"]

# EC2 families with NVIDIA GPUs that EKS' NVIDIA AMIs support.
GPU_INSTANCE = re.compile(r"^(g4dn|g5|g5g|g6|g6e|gr6|p4d|p4de|p5|p5e|p5en)\.[0-9a-z]+$")
LogType = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]
DEFAULT_LOG_TYPES: tuple[LogType, ...] = ("api", "audit", "authenticator")
GpuAmiType = Literal["AL2023_x86_64_NVIDIA", "AL2023_ARM_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA",
                     "BOTTLEROCKET_ARM_64_NVIDIA"]
K8S_VERSION = r"^1\.[0-9]{2}$"
CIDR = r"^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$"
GPU_TYPE = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
OPEN_WORLD = "0.0.0.0/0"
SUBNET_PREFIX = 20
"""Each availability zone gets one public and one private subnet of this size (`platform/network.py`)."""


def _ipv4_network(value: str) -> str:
    """An IPv4 network as written (`10.40.0.0/16`): octets 0-255, a prefix 0-32, no host bits."""
    try:
        ipaddress.IPv4Network(value, strict=False)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 network ({exc})") from None
    network = ipaddress.IPv4Network(value, strict=False)
    if str(network) != value:
        raise ValueError(f"{value!r} has host bits set: the network is {network}")
    return value


Cidr = Annotated[str, Field(pattern=CIDR), AfterValidator(_ipv4_network)]


class ConfigError(ValueError):
    """The stack configuration is unusable; nothing has been declared yet. Fix the named keys."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__(
            "invalid stack configuration (no resource was declared):\n  " + "\n  ".join(lines)
        )


class ConfigModel(BaseModel):
    """camelCase keys as written in Pulumi.<stage>.yaml, unknown keys refused, strict types
    (an unquoted `kubernetesVersion: 1.30` is the float 1.3, so it must not be coerced)."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        strict=True,
        frozen=True,
    )


class NetworkConfig(ConfigModel):
    """`aistack:network`: the VPC."""

    cidr: Cidr = "10.40.0.0/16"
    """VPC CIDR; split into one public and one private /20 per availability zone."""
    availability_zones: Annotated[list[str], Field(min_length=2, max_length=3)]
    """2-3 AZ names of the region (EKS and RDS subnet groups need at least two)."""
    nat_gateways: Literal["single", "perAz"] = "perAz"
    """`single` saves money (dev); `perAz` keeps private subnets online when one AZ fails."""

    @model_validator(mode="after")
    def _room_for_subnets(self) -> NetworkConfig:
        network = ipaddress.IPv4Network(self.cidr)
        needed = 2 * len(self.availability_zones)
        if network.prefixlen < 16:
            raise violation(("cidr",), f"{self.cidr}: a VPC is at most a /16 (AWS refuses larger blocks)")
        if network.prefixlen > SUBNET_PREFIX or 2 ** (SUBNET_PREFIX - network.prefixlen) < needed:
            raise violation(("cidr",), f"{self.cidr} is too small for {needed} /{SUBNET_PREFIX} subnets (a "
                                       "public and a private one per availability zone): use a /16 or /17")
        return self


class NodeGroupConfig(ConfigModel):
    """Sizes shared by the system and the GPU node groups."""

    instance_types: Annotated[list[str], Field(min_length=1)]
    """EC2 instance types, first preferred."""
    min_size: Annotated[int, Field(ge=0)] = 1
    """Fewest nodes the group scales to."""
    max_size: Annotated[int, Field(ge=1)] = 2
    """Most nodes the group scales to."""
    desired_size: Annotated[int, Field(ge=0)] = 1
    """Nodes started now (no cluster autoscaler is installed: this is what runs and bills)."""
    disk_size_gb: Annotated[int, Field(ge=20, le=16384)] = 50
    """Root volume; GPU nodes need room for multi-GB vLLM images."""
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    """`SPOT` is cheaper and can be interrupted (refused for GPUs in prod)."""

    @model_validator(mode="after")
    def _sizes_ordered(self) -> NodeGroupConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise violation(
                ("desiredSize",),
                f"need minSize <= desiredSize <= maxSize, got {self.min_size}, {self.desired_size}, "
                f"{self.max_size}",
            )
        return self


class GpuNodeGroupConfig(NodeGroupConfig):
    """One GPU node group: labelled with its GPU type, tainted `nvidia.com/gpu`."""

    name: Annotated[str, Field(pattern=DNS_LABEL, max_length=20)]
    """Short name (`l4`, `h100`), part of the node group's name."""
    gpu_type: Annotated[str, Field(pattern=GPU_TYPE, max_length=63)]
    """Value of the `aistack.dev/gpu-type` node label; what `spec.model.vllm.gpu.type` selects."""
    ami_type: GpuAmiType = "AL2023_x86_64_NVIDIA"
    """An EKS AMI with the NVIDIA driver."""
    min_size: Annotated[int, Field(ge=0)] = 0
    """Fewest nodes; 0 lets an idle GPU pool cost nothing."""
    disk_size_gb: Annotated[int, Field(ge=100, le=16384)] = 200
    """Root volume; vLLM images are ~10 GB and pulled per node."""

    @model_validator(mode="after")
    def _gpu_instances(self) -> GpuNodeGroupConfig:
        bad = [t for t in self.instance_types if not GPU_INSTANCE.match(t)]
        if bad:
            raise violation(("instanceTypes",),
                            f"{bad} are not NVIDIA GPU instance types (use g5, g6, g6e, p4d, p5, ...)")
        return self


class ClusterConfig(ConfigModel):
    """`aistack:cluster`: EKS control plane, node groups and in-cluster add-ons."""

    kubernetes_version: Annotated[str, Field(pattern=K8S_VERSION)]
    """EKS version, quoted (`"1.32"`)."""
    endpoint_public_access: bool = True
    """Whether the API server is reachable from outside the VPC (it always is from inside)."""
    public_access_cidrs: list[Cidr] = Field(default_factory=list)
    """Who may reach the public endpoint; required when it is on."""
    log_types: list[LogType] = Field(default_factory=lambda: list(DEFAULT_LOG_TYPES))
    """Control-plane logs sent to CloudWatch."""
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827,
                                3653] = 30
    """How long CloudWatch keeps them (EKS would otherwise keep them forever)."""
    system_nodes: NodeGroupConfig
    """Node group for CoreDNS, the operator, gateways, Qdrant and MLflow."""
    gpu_node_groups: Annotated[list[GpuNodeGroupConfig], Field(min_length=1)]
    """GPU node groups for vLLM."""
    device_plugin_version: Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")] = "0.17.1"
    """Helm chart version of the NVIDIA device plugin."""

    @model_validator(mode="after")
    def _endpoint_reachable(self) -> ClusterConfig:
        rules = RuleCollector()
        if self.endpoint_public_access and not self.public_access_cidrs:
            rules.add(("publicAccessCidrs",), "required when endpointPublicAccess is true")
        names = [g.name for g in self.gpu_node_groups]
        if len(set(names)) != len(names):
            rules.add(("gpuNodeGroups",), f"names must be unique, got {names}")
        rules.raise_if_any()
        return self


class DatabaseConfig(ConfigModel):
    """RDS PostgreSQL behind MLflow."""

    instance_class: Annotated[str, Field(pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")] = "db.t4g.micro"
    """RDS instance class."""
    engine_version: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?$")] = "16"
    """PostgreSQL major (or major.minor) version; picks the parameter group family."""
    allocated_storage_gb: Annotated[int, Field(ge=20, le=65536)] = 20
    """Initial storage (gp3, encrypted with the stores' KMS key)."""
    max_allocated_storage_gb: Annotated[int, Field(ge=20, le=65536)] = 100
    """Storage autoscaling ceiling."""
    multi_az: bool = False
    """A standby in a second AZ (required in prod)."""
    deletion_protection: bool = False
    """Refuse deletion, and take a final snapshot on destroy (required in prod)."""
    backup_retention_days: Annotated[int, Field(ge=1, le=35)] = 7
    """Days of automated backups (point-in-time recovery window)."""


class StoresConfig(ConfigModel):
    """`aistack:stores`: buckets, database and the workloads allowed to use them."""

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    noncurrent_version_days: Annotated[int, Field(ge=1, le=3650)] = 30
    """Old object versions are deleted after this many days."""
    workload_namespace: Annotated[str, Field(pattern=DNS_LABEL, max_length=63)] = "aistack"
    """Namespace of the AIStacks whose gateway and MLflow pods get bucket access (IRSA)."""
    gateway_service_account: Annotated[
        str, Field(pattern=r"^[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?$")] = "*-gateway"
    """Service account name (glob) of gateway pods in that namespace; the account created is
    the name with `*` as `aistack`."""
    mlflow_service_account: Annotated[
        str, Field(pattern=r"^[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?$")] = "*-tracking"
    """Service account name (glob) of MLflow pods in that namespace; created likewise."""


class OperatorConfig(ConfigModel):
    """`aistack:operator`: the aistack operator install."""

    version: Annotated[str, Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z._-]*$")] | None = None
    """Image tag; the installed aistack package version when unset."""
    image: Annotated[str, Field(min_length=1)] | None = None
    """Full image reference; overrides `version`."""
    namespace: Annotated[str, Field(pattern=DNS_LABEL, max_length=63)] = DEFAULT_NAMESPACE
    """Namespace of the operator (pod security `restricted`)."""
    replicas: Annotated[int, Field(ge=1, le=3)] = 1
    """More than one runs standby replicas (one leader, elected through a Lease)."""
    args: list[str] = Field(default_factory=list)
    """Container args of the operator (its image's entrypoint runs kopf)."""
    stack_file: str | None = None
    """Optional AIStack manifest (path relative to the project) to create after the operator."""


class PlatformConfig(ConfigModel):
    """Everything the program reads from config, validated as a whole."""

    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$")]
    """`aws:region` (the AWS provider's own key)."""
    stage: Stage
    """dev, staging or prod: the stage differences live in each `Pulumi.<stage>.yaml`."""
    network: NetworkConfig
    cluster: ClusterConfig
    stores: StoresConfig = Field(default_factory=StoresConfig)
    operator: OperatorConfig = Field(default_factory=OperatorConfig)

    @model_validator(mode="after")
    def _zones_in_region(self) -> PlatformConfig:
        outside = [z for z in self.network.availability_zones if not z.startswith(self.region)]
        if outside:
            raise violation(("network", "availabilityZones"),
                            f"{outside} are not zones of aws:region {self.region!r}")
        return self

    @model_validator(mode="after")
    def _prod_is_safe(self) -> PlatformConfig:
        if self.stage != "prod":
            return self
        rules = RuleCollector()
        db = self.stores.database
        if not db.multi_az:
            rules.add(("stores", "database", "multiAz"),
                      "must be true in prod (one AZ outage would stop MLflow)")
        if not db.deletion_protection:
            rules.add(("stores", "database", "deletionProtection"), "must be true in prod")
        if self.network.nat_gateways != "perAz":
            rules.add(("network", "natGateways"), "must be perAz in prod (a single NAT is one AZ's failure)")
        for i, group in enumerate(self.cluster.gpu_node_groups):
            if group.capacity_type == "SPOT":
                rules.add(("cluster", "gpuNodeGroups", i, "capacityType"),
                          "SPOT is refused in prod (model servers get interrupted)")
        if self.cluster.endpoint_public_access and OPEN_WORLD in self.cluster.public_access_cidrs:
            rules.add(("cluster", "publicAccessCidrs"),
                      "must not contain 0.0.0.0/0 in prod; list your CI/VPN egress CIDRs")
        rules.raise_if_any()
        return self


def _decode(key: str, value: Any) -> Any:
    """Pulumi hands structured config to programs as JSON strings."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigError([f"{PROJECT}:{key}: not valid JSON ({err.msg})"]) from None
    return value


def parse_config(raw: Mapping[str, Any]) -> PlatformConfig:
    """Validate `{"aistack:stage": "dev", "aistack:cluster": "{...}", ...}` (other namespaces
    are ignored, except `aws:region`). Raises ConfigError naming every broken key."""
    prefix = f"{PROJECT}:"
    known = [(f.alias or n) for n, f in PlatformConfig.model_fields.items() if n != "region"]
    data: dict[str, Any] = {}
    if "aws:region" in raw:
        data["region"] = raw["aws:region"]
    unknown: list[str] = []
    for full_key, value in raw.items():
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix):]
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            unknown.append(f"{full_key}: unknown key"
                           + (f"; did you mean {prefix}{hint[0]}?" if hint else ""))
            continue
        data[key] = _decode(key, value)
    lines = list(unknown)
    try:
        config = PlatformConfig.model_validate(data)
    except ValidationError as err:
        for e in field_errors(err, root=PlatformConfig):
            lines.append(f"aws:{e}" if e.path == "region" else f"{prefix}{e}")
        raise ConfigError(lines) from None
    if lines:
        raise ConfigError(lines)
    return config


def load_config() -> PlatformConfig:
    """The running program's config (what `pulumi config` holds for the selected stack)."""
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return parse_config(raw)


def load_stack_file(path: Path, *, workload_namespace: str) -> AIStack:
    """The AIStack of `operator.stackFile`, validated like `aistack validate` does, and placed
    in the workloads' namespace (where the MLflow backend Secret is)."""
    key = f"{PROJECT}:operator.stackFile"
    try:
        stack = load_stack(path)
    except ManifestError as err:
        raise ConfigError([f"{key}: {e}" for e in str(err).splitlines()]) from None
    if stack.metadata.namespace not in (None, workload_namespace):
        raise ConfigError(
            [(f"{key}: the AIStack is in namespace {stack.metadata.namespace!r}; use "
              f"stores.workloadNamespace ({workload_namespace!r}) or change the manifest, so it finds the "
              "mlflow-backend Secret")]
        )
    return stack


def config_keys() -> list[tuple[str, str, str]]:
    """Every config key as `(aistack:path.to.key, default or 'required', description)`, from
    the models, so the README's key reference can be checked against them."""
    return list(_walk(PlatformConfig, f"{PROJECT}:"))


def _walk(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, str, str]]:
    for name, info in model.model_fields.items():
        if model is PlatformConfig and name == "region":
            continue
        path = f"{prefix}{info.alias or name}" if prefix.endswith(":") else f"{prefix}.{info.alias or name}"
        inner, is_list = _model_inside(info.annotation)
        if inner is not None:
            yield from _walk(inner, path + ("[]" if is_list else ""))
            continue
        if info.is_required():
            default = "required"
        else:
            value = info.get_default(call_default_factory=True)
            default = "unset" if value is None else json.dumps(value)
        yield path, default, " ".join((info.description or "").split())


def _model_inside(tp: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (directly, optionally or as a list of them), if any."""
    is_list = False
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return None, False
            tp = args[0]
        elif origin is list:
            tp, is_list = typing.get_args(tp)[0], True
        else:
            break
    return (tp, is_list) if isinstance(tp, type) and issubclass(tp, BaseModel) else (None, False)
