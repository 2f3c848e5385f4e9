"""The AIStack resource: spec (six layers plus the gateway), status, and the document itself."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aistack.api.cel import cel_rules, rule
from aistack.api.rules import RuleCollector
from aistack.api.types import DNS1123_LABEL, ApiModel, DnsLabel, DnsSubdomain, Resources, SecretKeyRef
from aistack.api.v1alpha1.canary import STICKY_RULES, CanaryStatus, check_sticky
from aistack.api.v1alpha1.guardrails import GuardrailsSpec
from aistack.api.v1alpha1.mlops import EvaluationSpec, ObservabilitySpec
from aistack.api.v1alpha1.model import ModelSpec
from aistack.api.v1alpha1.orchestration import OrchestrationSpec
from aistack.api.v1alpha1.retrieval import RetrievalSpec

DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
MAX_NAME_LENGTH = 40
GROUP = "aistack.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "AIStack"
PLURAL = "aistacks"
SINGULAR = "aistack"
SHORT_NAMES = ["ais"]

PRODUCTION_STAGE = r"(^|-)(prod|production|prd|live)(-|$)"
"""A stage whose role is production: one of these words as the name or a '-'-separated part of it
(`prod`, `production`, `prod-eu`, `eu-live`; not `preprod` or `products`). RE2 and Python alike,
so the CRD's CEL rule and the models decide the same way."""


def is_production(stage: str) -> bool:
    """True when `stage` serves production (`PRODUCTION_STAGE`): its gateway is never open."""
    return re.search(PRODUCTION_STAGE, stage) is not None


# Keys whose literal string value would be a credential. Matched on the normalised key
# (lower case, no separators), anywhere in the spec.
_SECRET_KEY_NAMES = re.compile(r"(apikey|token|password|passwd|secret|credentials?|privatekey|accesskey)$")
# Values that are credentials whatever key they sit under.
_SECRET_VALUES = re.compile(
    r"(\bsk-[A-Za-z0-9_-]{16,}|\bhf_[A-Za-z0-9]{20,}|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}|-----BEGIN [A-Z ]*PRIVATE KEY-----|://[^/\s:@]+:[^/\s@]+@)"
)


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler for the gateway."""

    model_config = cel_rules(
        rule(
            '(has(self.minReplicas) ? self.minReplicas : 1) '
            '<= (has(self.maxReplicas) ? self.maxReplicas : 5)',
            'minReplicas must not be greater than maxReplicas',
            '.minReplicas',
        ),
    )

    min_replicas: Annotated[int, Field(ge=1, le=1000)] = 1
    """Lower bound."""
    max_replicas: Annotated[int, Field(ge=1, le=1000)] = 5
    """Upper bound."""
    target_cpu_utilization: Annotated[int, Field(ge=1, le=100)] = 70
    """Average CPU utilisation (percent of requests) to aim for."""

    @model_validator(mode="after")
    def _check(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            rules = RuleCollector()
            rules.add(("minReplicas",),
                      f"{self.min_replicas} is greater than maxReplicas ({self.max_replicas})")
            rules.raise_if_any()
        return self


class GatewaySpec(ApiModel):
    """The OpenAI-compatible gateway that serves the stack (the aistack runtime)."""

    image: str | None = None
    """Runtime image; `ghcr.io/aistack-dev/runtime:<operator version>` when unset."""
    replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    """Gateway pods when autoscaling is off (`kubectl scale ais/<name>` sets it)."""
    autoscaling: Autoscaling | None = None
    """Scale on CPU instead of a fixed replica count."""
    api_keys_secret_ref: SecretKeyRef | None = None
    """Secret key holding the accepted API keys, one per line as `key` or `key tenant`;
    the gateway is open when unset (refused for a production stage: `prod`, `production`,
    `prod-eu`...)."""
    tenant_header: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")] = "X-Tenant"
    """Header naming the tenant when the API key does not."""
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    """Largest accepted request body."""
    resources: Resources = Field(default_factory=Resources)
    """Gateway container resources; unset keys default to requests `{cpu: 250m, memory: 1Gi}` and
    limits `{memory: 2Gi}`."""
    service_account_name: DnsSubdomain | None = None
    """ServiceAccount of the gateway pods and the ingestion Job, e.g. one bound to a cloud role
    that reads the `s3://` sources (EKS IRSA: `pulumi up` creates `aistack-gateway`); the
    namespace's `default` when unset. No Kubernetes API token is mounted either way."""


class AIStackSpec(ApiModel):
    """An AI application stack: the model plus, optionally, each further layer.

    Phased adoption: start with `model` only and add retrieval, orchestration, guardrails and
    MLOps by editing this one manifest. The whole spec is at most 512 KiB as JSON: the operator's
    ConfigMaps hold it, and the API server takes at most 1 MiB per object.
    """

    model_config = cel_rules(
        rule(
            f"!has(self.stage) || !self.stage.matches('{PRODUCTION_STAGE}') || (has(self.gateway) && "
            "has(self.gateway.apiKeysSecretRef))",
            "a production stage (prod, production, prd or live, alone or as a '-' part of the name) needs "
            "gateway.apiKeysSecretRef: a production gateway is never open",
            '.gateway',
        ),
        rule(
            '!has(self.evaluation) || has(self.observability)',
            'evaluation needs observability: runs are logged to MLflow for promotion',
            '.observability',
        ),
        *STICKY_RULES,
    )

    stage: Annotated[str, Field(pattern=DNS1123_LABEL, min_length=1, max_length=63)] = "dev"
    """Stage this manifest is for: `dev`, `staging`, `prod` or any DNS label. A production stage
    (`prod`, `production`, `prd` or `live`, alone or as a '-' part: `prod-eu`) needs
    `gateway.apiKeysSecretRef`."""
    model: ModelSpec
    """Layer 2: the foundation model (required)."""
    retrieval: RetrievalSpec | None = None
    """Layer 3: vector search over your documents."""
    orchestration: OrchestrationSpec = Field(default_factory=OrchestrationSpec)
    """Layer 4: pipeline or bounded agent."""
    guardrails: GuardrailsSpec | None = None
    """Layer 5: input and output rails."""
    observability: ObservabilitySpec | None = None
    """Layer 6: MLflow tracing."""
    evaluation: EvaluationSpec | None = None
    """Layer 6: evaluation and promotion thresholds."""
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    """The serving endpoint."""

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        rules = RuleCollector()
        _find_inline_secrets(data, (), rules)
        rules.raise_if_any()
        return data

    @model_validator(mode="after")
    def _check(self) -> AIStackSpec:
        rules = RuleCollector()
        if is_production(self.stage) and self.gateway.api_keys_secret_ref is None:
            rules.add(("gateway", "apiKeysSecretRef"),
                      f"required for stage {self.stage!r}, a production stage: a production gateway is "
                      "never open")
        if self.evaluation is not None and self.observability is None:
            rules.add(("observability",), "required with evaluation: runs are logged to MLflow for promotion")
        orch = self.orchestration
        vllm = self.model.vllm
        if orch.mode == "agent" and orch.tools and vllm is not None and vllm.tool_call_parser is None:
            rules.add(("model", "vllm", "toolCallParser"),
                      "required for an agent with tools on vLLM (it answers tool_choice 'auto' with 400 "
                      "without one): the parser of the model's chat format, e.g. 'hermes' for Qwen2.5")
        if orch.prompt_template and "{context}" in orch.prompt_template and self.retrieval is None:
            rules.add(("orchestration", "promptTemplate"),
                      "uses {context} but the stack has no retrieval layer")
        check_sticky(self.model.canary, api_keys=self.gateway.api_keys_secret_ref is not None,
                     tenants=self.retrieval is not None and self.retrieval.tenant_field is not None,
                     rules=rules)
        _check_size(self, rules)
        rules.raise_if_any()
        return self


MAX_SPEC_BYTES = 512 * 1024
"""The largest spec (as JSON) the operator renders: the stack's manifest ConfigMap holds all of it
and the gateway's config ConfigMap most of it, and the API server takes at most 1 MiB per
object (a ConfigMap's data included), so half of that leaves room for YAML and metadata."""


def _check_size(spec: AIStackSpec, rules: RuleCollector) -> None:
    wire = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    size = len(json.dumps(wire, ensure_ascii=False, separators=(",", ":")).encode())
    if size <= MAX_SPEC_BYTES:
        return
    fields = sorted(_field_sizes(wire, ()), key=lambda item: -item[1])
    path, _ = fields[0]
    largest = ", ".join(f"spec.{'.'.join(map(str, p))} ({n // 1024} KiB)" for p, n in fields[:3])
    rules.add(path, f"the spec is {size // 1024} KiB as JSON, over the {MAX_SPEC_BYTES // 1024} KiB the "
                    "operator can render (its ConfigMaps hold the spec, and the API server takes at most "
                    f"1 MiB per object); the largest fields: {largest}")


def _field_sizes(value: Any, path: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], int]]:
    """(path, JSON bytes) of each field at most two levels below a layer, the unit a user shortens."""
    if isinstance(value, dict) and len(path) < 3:
        return [item for k, v in value.items() for item in _field_sizes(v, (*path, k))]
    return [(path, len(json.dumps(value, ensure_ascii=False).encode()))]


def _find_inline_secrets(node: Any, loc: tuple[str | int, ...], rules: RuleCollector) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            normalised = re.sub(r"[^a-z]", "", str(key).lower())
            if isinstance(
                    value, str | int) and not isinstance(
                        value, bool) and _SECRET_KEY_NAMES.search(normalised):
                rules.add(
                    (*loc, key),
                    f"inline secrets are not accepted; store it in a Secret and reference it with "
                    f"{_ref_name(str(key))}: {{name, key}}",
                )
            else:
                _find_inline_secrets(value, (*loc, key), rules)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _find_inline_secrets(item, (*loc, i), rules)
    elif isinstance(node, str) and _SECRET_VALUES.search(node):
        rules.add(loc, "looks like an inline credential; store it in a Secret and reference it")


def _ref_name(key: str) -> str:
    return key if key.endswith("SecretRef") else f"{key}SecretRef"


class Condition(BaseModel):
    """A standard Kubernetes condition (metav1.Condition)."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)

    type: str
    """`Ready` or a layer: `ModelReady`, `RetrievalReady`, `GuardrailsReady`, `TrackingReady`,
    `GatewayReady`."""
    status: Literal["True", "False", "Unknown"]
    """Condition status."""
    reason: str = ""
    """CamelCase reason, e.g. `InvalidSpec`, `Progressing`, `CollectionMismatch`."""
    message: str = ""
    """Human-readable detail."""
    lastTransitionTime: str | None = None  # noqa: N815 - Kubernetes wire name
    """When the status last changed (RFC 3339)."""
    observedGeneration: int | None = None  # noqa: N815 - Kubernetes wire name
    """The generation this condition was computed for."""


class EvaluationStatus(BaseModel):
    """The last in-cluster evaluation."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)

    configHash: str | None = None  # noqa: N815
    """Config hash that was evaluated."""
    verdict: Literal["Passed", "Failed", "Error"] | None = None
    """Whether the thresholds were met."""
    runId: str | None = None  # noqa: N815
    """MLflow run id."""


class IngestionStatus(BaseModel):
    """The ingestion Job of the current sources (`retrieval.sources` with a volume or `s3://`)."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)

    job: str | None = None
    """The Job's name (`kubectl logs job/<name>` tells what it read and skipped)."""
    phase: Literal["Running", "Succeeded", "Failed"] | None = None
    """Running (retried on transient failures), Succeeded, or Failed."""
    message: str | None = None
    """What it is doing, or why it failed."""


class AdapterStatus(BaseModel):
    """One LoRA adapter (`spec.model.vllm.adapters`) over the model's replicas, as their adapter
    agents report it."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)

    name: str
    """The adapter's name."""
    phase: Literal["Pending", "Downloading", "Loaded", "Failed"]
    """Loaded: on every replica that reports; Failed: on one at least (`reason` says why);
    Downloading: being pulled into the model cache; Pending: no replica has reported it yet."""
    replicas: int = 0
    """Replicas that have it loaded."""
    reason: str | None = None
    """Why it failed, and on which pod."""


class ModelStatus(BaseModel):
    """The model layer as the operator runs it."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)

    adapters: list[AdapterStatus] | None = None
    """Each LoRA adapter's state (`spec.model.vllm.adapters`), as the adapter agents report it."""

    canary: CanaryStatus | None = None
    """The canary in force (`spec.model.canary`): its weight and verdict."""


class AIStackStatus(BaseModel):
    """Observed state, written by the operator only."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)

    conditions: list[Condition] = Field(default_factory=list)
    """`Ready` plus one condition per declared layer."""
    observedGeneration: int | None = None  # noqa: N815
    """The spec generation the status describes."""
    phase: Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"] | None = None
    """Summary for humans; tools should read the conditions."""
    endpoint: str | None = None
    """In-cluster URL of the OpenAI-compatible gateway."""
    configHash: str | None = None  # noqa: N815
    """Hash of the promotable configuration (model, prompts, retrieval, guardrails)."""
    replicas: int | None = None
    """Ready gateway pods (for `kubectl scale`)."""
    selector: str | None = None
    """Label selector of the gateway pods (for `kubectl scale` / HPA)."""
    evaluation: EvaluationStatus | None = None
    """The last in-cluster evaluation."""
    ingestion: IngestionStatus | None = None
    """The ingestion of the current sources, while it has a Job."""
    model: ModelStatus | None = None
    """The model layer: the canary in force."""


class ObjectMeta(BaseModel):
    """The parts of Kubernetes object metadata aistack reads; the rest passes through."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(pattern=DNS1035_LABEL, min_length=1, max_length=MAX_NAME_LENGTH)]
    """Name of the AIStack: a DNS-1035 label of at most 40 characters, because it prefixes
    the names of child Services and Deployments."""
    namespace: DnsLabel | None = None
    """Namespace; `default` when unset."""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    generation: int | None = None


class AIStack(BaseModel):
    """The AIStack custom resource: one manifest for a whole AI application."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    apiVersion: Literal["aistack.dev/v1alpha1"]  # noqa: N815
    """`aistack.dev/v1alpha1`."""
    kind: Literal["AIStack"]
    """`AIStack`."""
    metadata: ObjectMeta
    """Standard object metadata."""
    spec: AIStackSpec
    """Desired state."""
    status: AIStackStatus | None = None
    """Observed state."""

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"
