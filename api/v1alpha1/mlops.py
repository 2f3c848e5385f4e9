"""Layer 6, MLOps: MLflow tracking and tracing, and the evaluation that gates promotion."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from aistack.api.cel import cel_rules, rule
from aistack.api.rules import RuleCollector, violation
from aistack.api.types import ApiModel, ConfigMapKeyRef, DnsSubdomain, Resources, SecretKeyRef, Storage

DEFAULT_MLFLOW_IMAGE = "ghcr.io/mlflow/mlflow:v3.5.0"

# Metrics `aistack eval` computes; thresholds may only name these (a typo would otherwise
# make a gate that can never fail).
EVAL_METRICS: dict[str, str] = {
    "retrieval_hit_rate": "share of questions whose expected source is in the top k (higher is better)",
    "retrieval_mrr": "mean reciprocal rank of the first expected source (higher is better)",
    "answer_token_f1": "token F1 of answer vs reference (higher is better)",
    "answer_similarity": "embedding cosine similarity of answer vs reference (higher is better)",
    "groundedness": "share of answer sentences supported by retrieved context (higher is better)",
    "guardrail_accuracy": "share of expected refusals refused and others answered (higher is better)",
    "latency_p50_ms": "median end-to-end latency (lower is better)",
    "latency_p95_ms": "95th percentile end-to-end latency (lower is better)",
    "error_rate": "share of questions that failed (lower is better)",
}
LOWER_IS_BETTER = frozenset({"latency_p50_ms", "latency_p95_ms", "error_rate"})
"""The metrics where less is better (the others are shares or scores where more is)."""
LATENCY_METRICS = frozenset({"latency_p50_ms", "latency_p95_ms"})
"""Milliseconds, compared as ratios; the other metrics are shares or scores in [0, 1]."""


class ManagedMlflow(ApiModel):
    """An MLflow tracking server run by the operator."""

    image: str = DEFAULT_MLFLOW_IMAGE
    """MLflow server image."""
    backend_store_secret_ref: SecretKeyRef | None = None
    """Secret key holding the backend store URI (e.g. PostgreSQL); embedded sqlite on a PVC
    when unset."""
    artifact_uri: Annotated[str, Field(pattern=r"^(s3|gs|wasbs|file)://.+$")] | None = None
    """Where artifacts go, e.g. `s3://bucket/mlflow`; the PVC when unset."""
    storage: Storage = Field(default_factory=lambda: Storage(size="10Gi"))
    """PVC for sqlite and local artifacts."""
    resources: Resources = Field(default_factory=Resources)
    """Container resources; unset keys default to requests `{cpu: 250m, memory: 512Mi}` and limits
    `{memory: 2Gi}`."""
    service_account_name: DnsSubdomain | None = None
    """ServiceAccount of the MLflow pods, e.g. one bound to a cloud role that writes the
    `s3://` artifactUri (EKS IRSA: `pulumi up` creates `aistack-tracking`); the namespace's
    `default` when unset. No Kubernetes API token is mounted either way."""


class ExternalMlflow(ApiModel):
    """An MLflow tracking server that already runs (Databricks, a shared server)."""

    tracking_uri: Annotated[str, Field(pattern=r"^(https?://[^\s@]+|databricks(://[^\s]+)?)$")]
    """Tracking URI, e.g. `https://mlflow.example.com`."""
    token_secret_ref: SecretKeyRef | None = None
    """Secret key with a bearer token (`MLFLOW_TRACKING_TOKEN`)."""


class MlflowTracking(ApiModel):
    """Exactly one of `managed` or `external`; managed by default."""

    model_config = cel_rules(
        rule(
            '!(has(self.managed) && has(self.external))',
            'set either managed or external, not both',
        ),
    )

    managed: ManagedMlflow | None = None
    """Run MLflow in the cluster."""
    external: ExternalMlflow | None = None
    """Use an existing MLflow."""

    @model_validator(mode="after")
    def _one_of(self) -> MlflowTracking:
        if self.managed is not None and self.external is not None:
            raise violation(("external",), "set either managed or external, not both")
        if self.managed is None and self.external is None:
            self.managed = ManagedMlflow()
        return self


class ObservabilitySpec(ApiModel):
    """Traces of every request, and where evaluation runs are logged."""

    mlflow: MlflowTracking = Field(default_factory=MlflowTracking)
    """The tracking server."""
    experiment: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """MLflow experiment; `aistack/<namespace>/<name>` when unset."""
    trace_sampling: Annotated[float, Field(ge=0, le=1)] = 1.0
    """Share of requests traced."""


class Threshold(ApiModel):
    """Bounds one metric must meet."""

    model_config = cel_rules(
        rule(
            'has(self.min) || has(self.max)',
            'set min, max or both',
        ),
        rule(
            '!has(self.min) || !has(self.max) || self.min <= self.max',
            'min must not be greater than max',
        ),
    )

    min: float | None = None
    """Lowest acceptable value."""
    max: float | None = None
    """Highest acceptable value."""

    @model_validator(mode="after")
    def _check(self) -> Threshold:
        if self.min is None and self.max is None:
            raise violation((), "set min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise violation(("min",), f"{self.min} is greater than max ({self.max})")
        return self


class Dataset(ApiModel):
    """A JSONL evaluation set: one `{"question", "reference"?, "sources"?, "refuse"?}` per line."""

    model_config = cel_rules(
        rule(
            'has(self.path) != has(self.configMapKeyRef)',
            'set exactly one of path or configMapKeyRef',
        ),
    )

    path: Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^(s3://.+|[^:]+)$")] | None = None
    """A path (relative to the manifest locally) or `s3://bucket/key`."""
    config_map_key_ref: ConfigMapKeyRef | None = None
    """A ConfigMap key holding the JSONL (in-cluster evaluation Jobs)."""

    @model_validator(mode="after")
    def _one_of(self) -> Dataset:
        if (self.path is None) == (self.config_map_key_ref is None):
            raise violation(("path",), "set exactly one of path or configMapKeyRef")
        return self


class EvaluationSpec(ApiModel):
    """How the stack is evaluated, and what a promotion to the next stage requires."""

    dataset: Dataset
    """The evaluation set."""
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    """Metric bounds, e.g. `{answer_token_f1: {min: 0.6}, latency_p95_ms: {max: 3000}}`."""
    max_run_age_hours: Annotated[int, Field(ge=1, le=24 * 365)] = 168
    """An evaluation run older than this does not count for promotion."""
    judge: Literal["none"] = "none"
    """LLM-as-judge scorers; `none` (deterministic metrics only) is the one supported now."""
    resources: Resources = Field(default_factory=Resources)
    """The evaluation Job's container resources; unset keys default to requests `{cpu: 250m,
    memory: 1Gi}` and limits `{memory: 2Gi}`."""

    @model_validator(mode="after")
    def _check(self) -> EvaluationSpec:
        rules = RuleCollector()
        for metric in self.thresholds:
            if metric not in EVAL_METRICS:
                rules.add(("thresholds", metric), f"unknown metric; known: {', '.join(EVAL_METRICS)}")
        rules.raise_if_any()
        return self
