"""A canary: a second version of the model taking a share of the traffic (`spec.model.canary`).

The spec says what the canary is (another model name, image or engine flags on vLLM, one of the
base model's LoRA adapters, or another model name at an OpenAI-compatible endpoint), the share to
start with, what keeps one conversation on one version, and how it is judged. The weight *in force*
is the operator's (`status.model.canary`): it sets it to 0 when the analysis fails and steps it up
when it passes, and never edits the spec (GitOps owns it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aistack.api.cel import cel_rules, rule
from aistack.api.engine import check_extra_args
from aistack.api.rules import RuleCollector
from aistack.api.types import ApiModel

if TYPE_CHECKING:
    from aistack.api.v1alpha1.model import ModelSpec

HEADER_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
MAX_STEPS = 10
_RISING = "!has(self.steps) || (" + " && ".join(
    f"(size(self.steps) <= {i + 1} || self.steps[{i}] < self.steps[{i + 1}])"
    for i in range(MAX_STEPS - 1)) + ")"
"""Steps rising one after the other, as CEL without the API server's list extension (`isSorted()`)."""


class CanaryAnalysis(ApiModel):
    """How the operator judges the canary against the stable version, from what the gateways count
    per version over the last `windowSeconds` (reported on the stack's load Lease).

    A check needs at least `minRequests` canary requests in the window; with fewer the verdict
    waits. Failing a check sets the weight in force to 0 (RolledBack), keeping the canary's pods for
    inspection. With `steps` the weight moves to the next step after each `stepIntervalSeconds`
    that passed; without, the weight stays the spec's (`manual`: a GitOps change moves it)."""

    model_config = cel_rules(
        rule(_RISING, "steps must rise step by step (e.g. [10, 50, 100])", ".steps"),
    )

    window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 300
    """The window the checks look at (each gateway keeps its counts per version for this long;
    minutes in practice, seconds in tests)."""
    min_requests: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    """Canary requests the window must hold before a check counts (fewer: no verdict yet)."""
    max_error_rate_increase: Annotated[float, Field(ge=0, le=1)] = 0.02
    """The canary's error rate (5xx answers and failed model calls over requests) may exceed the
    stable version's by at most this much (0.02: two points)."""
    max_latency_ratio: Annotated[float, Field(ge=1, le=100)] = 1.5
    """The canary's p95 latency (whole request) may be at most this multiple of the stable's."""
    max_evaluation_regression: Annotated[float, Field(ge=0, le=1)] = 0.05
    """When the stack declares `evaluation` with a `configMapKeyRef` dataset: how much worse than the
    stable version the canary may score on each metric of `evaluation.thresholds` (it must meet the
    thresholds too). The operator runs one canary evaluation Job asking both versions the same
    questions (`aistack eval --compare-stable`); a miss rolls the canary back, and no step is taken
    before it has passed. Scores and shares (0-1) compare in points (0.05: F1 0.80 -> 0.75 passes,
    0.74 fails; error rate 0.02 -> 0.07 passes), latencies as a fraction of the stable's (0.05: 5%
    slower). Without such an `evaluation` it has no effect: the canary is judged on the gateways'
    reports alone."""
    steps: Annotated[list[Annotated[int, Field(ge=1, le=100)]], Field(max_length=MAX_STEPS)] = \
        Field(default_factory=list)
    """Weights to move to, in order, each after `stepIntervalSeconds` of passing checks, e.g.
    `[10, 50, 100]` (must rise above `weight`); reaching the last one is `Promoted`. Empty:
    `manual`, the weight stays the spec's and only a failed check changes it (to 0)."""
    step_interval_seconds: Annotated[int, Field(ge=1, le=604_800)] = 600
    """How long a weight must pass its checks before the next step."""

    @model_validator(mode="after")
    def _check(self) -> CanaryAnalysis:
        rules = RuleCollector()
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            rules.add(("steps",), f"{self.steps} must rise step by step (e.g. [10, 50, 100])")
        rules.raise_if_any()
        return self


class CanarySpec(ApiModel):
    """A second version of the model that takes `weight` percent of the requests.

    On vLLM: another `name` (a Hugging Face repo id; a revision with `extraArgs: ["--revision",
    "<sha>"]`), `image` or `extraArgs`, served by a Deployment of its own (`<stack>-model-canary`,
    `replicas` pods), or one of `vllm.adapters` (`adapter`), served by the stable pods. On
    `provider: openai`: another model `name` at the same endpoint."""

    model_config = cel_rules(
        rule("!has(self.stickyBy) || self.stickyBy != 'header' || has(self.stickyHeader)",
             "stickyBy 'header' needs stickyHeader (the request header that names the conversation)",
             ".stickyHeader"),
        rule("!has(self.stickyHeader) || (has(self.stickyBy) && self.stickyBy == 'header')",
             "stickyHeader is only for stickyBy 'header'", ".stickyHeader"),
        rule("!has(self.adapter) || (!has(self.name) && !has(self.image) && !has(self.extraArgs))",
             "an adapter canary runs on the stable pods: name, image and extraArgs must be unset",
             ".adapter"),
        rule("!has(self.analysis) || !has(self.analysis.steps) || size(self.analysis.steps) == 0 || "
             "self.analysis.steps[0] > self.weight",
             "analysis.steps must start above weight (the steps are the weights after the first)",
             ".analysis.steps"),
        rule("has(self.adapter) || has(self.name) || has(self.image) || has(self.extraArgs)",
             "a canary needs what differs from the stable model: name, image, extraArgs or adapter",
             ".name"),
    )

    name: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s]+$")] | None = None
    """The canary's model: a Hugging Face repo id on vLLM, the API's model id on `provider: openai`;
    the stable's when unset (then `image` or `extraArgs` differ)."""
    image: str | None = None
    """vLLM only: the canary's server image; the stable's when unset."""
    extra_args: list[str] | None = None
    """vLLM only: the canary's further vLLM flags, replacing the stable's `extraArgs` (checked
    against the pinned vLLM's parser), e.g. `["--revision", "<sha>"]`; the stable's when unset."""
    adapter: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    """vLLM only: the canary is this entry of `vllm.adapters`, on the stable pods."""
    replicas: Annotated[int, Field(ge=1, le=100)] = 1
    """vLLM only: pods of the canary's Deployment (fixed: the canary does not autoscale)."""
    weight: Annotated[int, Field(ge=0, le=100)]
    """Percent of the requests the canary takes (0-100) until the analysis moves it."""
    sticky_by: Literal["apiKey", "tenant", "header"] | None = None
    """What keeps a conversation on one version: the caller's API key (needs
    `gateway.apiKeysSecretRef`), its tenant (needs `retrieval.tenantField`), or a request header
    (`stickyHeader`). A key hashes into [0, 100): the same key lands on the same version as long
    as the weight does not cross its point. Unset, or a request without the key: each request is
    drawn by chance."""
    sticky_header: Annotated[str, Field(pattern=HEADER_PATTERN)] | None = None
    """With `stickyBy: header`: the header, e.g. `X-Session-Id`."""
    analysis: CanaryAnalysis | None = None
    """Judge the canary against the stable version and act on it; none: the weight is the spec's
    and nothing rolls it back (`Manual`)."""

    @field_validator("weight", mode="before")
    @classmethod
    def _percent(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool) and not 0 <= value <= 100:
            raise ValueError(f"{value} is not a percent of the requests: 0 to 100")
        return value

    @model_validator(mode="after")
    def _check(self) -> CanarySpec:
        rules = RuleCollector()
        if self.sticky_by == "header" and self.sticky_header is None:
            rules.add(("stickyHeader",), "required with stickyBy 'header': the request header that names "
                                         "the conversation, e.g. X-Session-Id")
        if self.sticky_header is not None and self.sticky_by != "header":
            rules.add(("stickyHeader",), f"{self.sticky_header!r} is only read with stickyBy 'header' "
                                         f"(stickyBy is {self.sticky_by!r})")
        if self.adapter is not None:
            for key, value in (("name", self.name), ("image", self.image), ("extraArgs", self.extra_args)):
                if value is not None:
                    rules.add((key,), f"must be unset with adapter {self.adapter!r}: an adapter canary runs "
                                      "on the stable model's pods")
        elif self.name is None and self.image is None and self.extra_args is None:
            rules.add(("name",), "a canary needs what differs from the stable model: name, image, "
                                 "extraArgs or adapter")
        for i, message in check_extra_args(self.extra_args or []):
            rules.add(("extraArgs", i), message)
        steps = self.analysis.steps if self.analysis is not None else []
        if steps and steps[0] <= self.weight:
            rules.add(("analysis", "steps", 0), f"{steps[0]} must be greater than weight ({self.weight}): "
                                                "the steps are the weights after the first")
        rules.raise_if_any()
        return self


CANARY_MODEL_RULES = (
    rule("!has(self.canary) || self.provider == 'vllm' || "
         "(!has(self.canary.image) && !has(self.canary.extraArgs) && !has(self.canary.adapter))",
         "canary.image, canary.extraArgs and canary.adapter are for provider 'vllm' (an API canary is "
         "another model name at the same endpoint)", ".canary"),
    rule("!has(self.canary) || !has(self.canary.adapter) || (has(self.vllm) && has(self.vllm.adapters) && "
         "self.vllm.adapters.exists(a, a.name == self.canary.adapter))",
         "canary.adapter must name an entry of vllm.adapters", ".canary.adapter"),
    rule("!has(self.canary) || has(self.canary.adapter) || has(self.canary.image) || "
         "has(self.canary.extraArgs) || (has(self.canary.name) && self.canary.name != "
         "(self.provider == 'openai' && has(self.openai) && has(self.openai.model) ? self.openai.model "
         ": self.name))",
         "the canary is identical to the stable model: give it another name, image, extraArgs or adapter",
         ".canary"),
)
"""The canary's rules that need the model around it (`ModelSpec`'s CEL)."""


def canary_model(model: ModelSpec) -> ModelSpec:
    """The vLLM canary as a model of its own (its Deployment's): the stable's settings with the
    canary's name, image, extraArgs and replicas, served under the stable's public name (the
    gateway sends both versions the same `model`), without adapters or autoscaling. Its weights come
    into a volume of each pod (pulled there by an init container with `prePull`)."""
    canary = model.canary
    assert canary is not None and model.vllm is not None and canary.adapter is None
    vllm = model.vllm
    update: dict[str, object] = {
        "image": canary.image or vllm.image, "replicas": canary.replicas, "autoscaling": None,
        "extra_args": vllm.extra_args if canary.extra_args is None else canary.extra_args,
    }
    if "adapters" in type(vllm).model_fields:  # the stable's adapters were trained for its weights
        update["adapters"] = []
        update["lora"] = None
    return model.model_copy(update={"name": canary.name or model.name, "served_name": model.public_name,
                                    "vllm": vllm.model_copy(update=update), "canary": None})


def check_canary(model: ModelSpec, rules: RuleCollector) -> None:
    """The canary's rules that need the model around it (its provider, adapters, stable version)."""
    canary = model.canary
    if canary is None:
        return
    if model.provider != "vllm":
        for key, value in (("image", canary.image), ("extraArgs", canary.extra_args),
                           ("adapter", canary.adapter)):
            if value is not None:
                rules.add(("canary", key), f"only for provider 'vllm' (got provider {model.provider!r}): an "
                                           "API canary is another model name at the same endpoint")
    if canary.adapter is not None and model.provider == "vllm":
        names = [a.name for a in getattr(model.vllm, "adapters", [])]
        if canary.adapter not in names:
            rules.add(("canary", "adapter"), f"{canary.adapter!r} is not an entry of vllm.adapters "
                                             f"({', '.join(names) if names else 'none declared'})")
    if canary.adapter is None and model.provider == "vllm" and model.vllm is not None:
        same = ((canary.name or model.name) == model.name
                and (canary.image or model.vllm.image) == model.vllm.image
                and (canary.extra_args if canary.extra_args is not None else model.vllm.extra_args)
                == model.vllm.extra_args)
        if same:
            rules.add(("canary",), f"identical to the stable model ({model.name}, the same image and "
                                   "extraArgs): give it another name, image, extraArgs or adapter")
    if model.provider == "vllm" and model.vllm is not None and canary.name not in (None, model.name) \
            and model.vllm.cache.source != "hub":
        rules.add(("canary", "name"), f"{canary.name!r} differs from the stable model, whose weights come "
                                      f"from the mirror {model.vllm.cache.source}, which holds the stable's "
                                      "files only; a canary of another model downloads from the hub "
                                      "(cache.source: hub)")
    if model.provider == "openai" and canary.name is not None:
        stable = (model.openai.model if model.openai is not None else None) or model.name
        if canary.name == stable:
            rules.add(("canary", "name"), f"{canary.name!r} is the stable model at the same endpoint: name "
                                          "another model")


def check_sticky(canary: CanarySpec | None, *, api_keys: bool, tenants: bool, rules: RuleCollector) -> None:
    """The sticky key must exist in the stack: API keys need `gateway.apiKeysSecretRef`, tenants
    `retrieval.tenantField`."""
    if canary is None:
        return
    where = ("model", "canary", "stickyBy")
    if canary.sticky_by == "apiKey" and not api_keys:
        rules.add(where, "'apiKey' needs gateway.apiKeysSecretRef: this stack's gateway takes no API keys, "
                         "so no request carries one; use 'header' or set the keys")
    if canary.sticky_by == "tenant" and not tenants:
        rules.add(where, "'tenant' needs retrieval.tenantField: this stack has no tenants; use 'apiKey' "
                         "or 'header'")


STICKY_RULES = (
    rule("!has(self.model.canary) || !has(self.model.canary.stickyBy) || self.model.canary.stickyBy != "
         "'apiKey' || (has(self.gateway) && has(self.gateway.apiKeysSecretRef))",
         "model.canary.stickyBy 'apiKey' needs gateway.apiKeysSecretRef (no request carries a key "
         "otherwise)", ".model.canary.stickyBy"),
    rule("!has(self.model.canary) || !has(self.model.canary.stickyBy) || self.model.canary.stickyBy != "
         "'tenant' || (has(self.retrieval) && has(self.retrieval.tenantField))",
         "model.canary.stickyBy 'tenant' needs retrieval.tenantField (the stack has no tenants otherwise)",
         ".model.canary.stickyBy"),
)
"""The sticky key's rules (`AIStackSpec`'s CEL)."""


class CanaryEvaluationStatus(BaseModel):
    """The canary's evaluation (`status.model.canary.evaluation`): `aistack eval --compare-stable`
    in a Job, which the canary must pass before its first step."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)

    job: str
    """The Job (`kubectl logs job/<job>` prints both versions' metrics side by side)."""
    verdict: Literal["Running", "Passed", "Failed", "Error"]
    """`Running`: not finished (or not created yet: the canary's pods start first); `Passed`: it met
    the thresholds and is not worse than stable by more than `maxEvaluationRegression`; `Failed`: it
    is (the canary is rolled back); `Error`: the evaluation could not run (no step is taken; delete
    the Job to run it again)."""


class CanaryStatus(BaseModel):
    """The canary as the operator runs it (`status.model.canary`)."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)

    weight: int = 0
    """Percent of the requests the gateways send to the canary now."""
    step: int | None = None
    """Index of `analysis.steps` in force; None before the first step (the spec's `weight`)."""
    verdict: Literal["Progressing", "Promoted", "RolledBack", "Manual"] = "Manual"
    """`Progressing`: analysed, stepping up; `Promoted`: at the last step; `RolledBack`: a check failed,
    weight 0 (the canary's pods are kept); `Manual`: the weight is the spec's (no steps)."""
    reason: str = ""
    """Why, with the numbers of the last check."""
    since: str | None = None
    """When the weight in force was set (RFC 3339): the step interval counts from here."""
    specHash: str | None = None  # noqa: N815 - wire name
    """Hash of the `spec.model.canary` judged: a changed canary starts again from its weight."""
    evaluation: CanaryEvaluationStatus | None = None
    """The canary's evaluation Job against the stable version (with `analysis` and a stack
    `evaluation` on a ConfigMap dataset); None without one."""
