"""Layer 2, the foundation model: self-hosted on vLLM, or any OpenAI-compatible API."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field, HttpUrl, model_validator

from aistack.api.cel import cel_rules, rule
from aistack.api.engine import DEFAULT_VLLM_IMAGE, check_extra_args
from aistack.api.rules import RuleCollector, violation
from aistack.api.types import ApiModel, Quantity, Resources, SecretKeyRef, Toleration
from aistack.api.v1alpha1.canary import CANARY_MODEL_RULES, CanarySpec, check_canary

class OpenAIEndpoint(ApiModel):
    """An OpenAI-compatible HTTP API: a hosted provider, an existing vLLM, Ollama, TGI..."""

    base_url: HttpUrl
    """Base URL including the version path, e.g. `https://api.openai.com/v1`."""
    api_key_secret_ref: SecretKeyRef | None = None
    """Secret key holding the API key; required for `provider: openai`."""
    model: str | None = None
    """Model name at this endpoint; defaults to `model.name` (set it on a fallback)."""
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """Whole-request timeout for one call to this endpoint."""


class GpuSpec(ApiModel):
    """GPUs per model server pod and where such nodes are found."""

    count: Annotated[int, Field(ge=0, le=16)] = 1
    """`nvidia.com/gpu` per pod."""
    type: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=63)] | None = None
    """GPU type, e.g. `nvidia-l4`, `nvidia-a10g`, `nvidia-h100`; selects nodes labelled
    `aistack.dev/gpu-type=<type>` (the platform's GPU node groups carry that label)."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Extra node selector labels."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Extra tolerations; the `nvidia.com/gpu` taint is always tolerated."""


MIRROR_PATTERN = r"^(hub|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?)$"


class ModelCache(ApiModel):
    """The volume that holds the model's weights, kept across restarts, and how they get there."""

    model_config = cel_rules(
        rule("!has(self.source) || self.source == 'hub' || (has(self.prePull) && self.prePull)",
             "an s3:// mirror needs prePull: true (vLLM itself downloads from the Hugging Face Hub only)",
             '.source'),
    )

    size: Quantity = "100Gi"
    """Capacity; leave room for the weights plus one upgrade."""
    storage_class_name: str | None = None
    """StorageClass; the cluster default when unset."""
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = "ReadWriteOnce"
    """`ReadWriteMany` (a storage class that allows it: EFS, Filestore, Azure Files, NFS): one volume
    that every replica shares. `ReadWriteOnce` (block storage, e.g. gp3) attaches to one node: one
    replica keeps its volume across restarts; with more replicas each pod gets a volume of its own
    that lives as long as the pod (a new pod downloads again)."""
    pre_pull: bool = False
    """Download the weights into the cache before vLLM starts, and start vLLM with the hub offline
    on the cached folder. On a shared volume (`ReadWriteMany`, or one replica) a Job downloads
    once and the model's pods are created (or changed to a new model) only when it has finished,
    so GPU pods never sit idle downloading (`ModelReady`: Downloading, Cached, DownloadFailed);
    on per-pod volumes an init container of each pod downloads."""
    source: Annotated[str, Field(pattern=MIRROR_PATTERN, max_length=1024)] = "hub"
    """Where the weights come from: `hub` (the Hugging Face Hub, with `hfTokenSecretRef`), or an
    `s3://bucket/prefix` mirror holding the model's files (read with the gateway's service
    account, as the ingestion Job reads S3 sources; needs `prePull`)."""

    @model_validator(mode="after")
    def _check(self) -> ModelCache:
        rules = RuleCollector()
        if self.source != "hub" and not self.pre_pull:
            rules.add(("source",), f"{self.source!r} needs prePull: true (vLLM itself downloads from the "
                                  "Hugging Face Hub only)")
        rules.raise_if_any()
        return self


class Routing(ApiModel):
    """How the gateway spreads requests over the model's replicas (each gateway pod finds the ready
    ones through a headless Service: no Kubernetes API rights)."""

    policy: Literal["prefix", "least-busy", "round-robin"] = "prefix"
    """`prefix`: requests sharing a prompt's leading text (system prompt and retrieved context) go
    to the replica whose prefix cache holds it, with bounded loads (no replica takes more than 1.25x
    the average in flight); `least-busy`: the fewest requests in flight; `round-robin`."""


class ModelAutoscaling(ApiModel):
    """The model's replica count follows its load, down to zero replicas if allowed.

    `builtin`: the operator sets the count through the Deployment's scale subresource from the load
    the stack's gateways report (requests in flight to the model plus requests held while it has no
    replica, and with `targetWaiting` the requests the engines queue): up at once, down only after
    the load stayed below 80% of the target for `scaleDownDelaySeconds`. `keda`: a KEDA ScaledObject
    does it instead, from the gateways' demand metric in Prometheus. With `minReplicas: 0` the model
    stops after `idleSeconds` without a request, and the gateway holds a request that arrives then
    for up to `holdSeconds` while it starts again.
    """

    model_config = cel_rules(
        rule("(has(self.minReplicas) ? self.minReplicas : 1) <= self.maxReplicas",
             "minReplicas must not be greater than maxReplicas", ".minReplicas"),
        rule("!has(self.engine) || self.engine != 'keda' || has(self.prometheusUrl)",
             "engine 'keda' needs prometheusUrl (the Prometheus that scrapes the gateways)",
             ".prometheusUrl"),
        rule("!has(self.prometheusUrl) || (has(self.engine) && self.engine == 'keda')",
             "prometheusUrl is only for engine 'keda'", ".prometheusUrl"),
        rule("!has(self.targetWaiting) || !has(self.engine) || self.engine == 'builtin'",
             "targetWaiting is only for engine 'builtin' (KEDA's trigger reads the gateways' demand)",
             ".targetWaiting"),
    )

    engine: Literal["builtin", "keda"] = "builtin"
    """`builtin`: the operator scales (nothing to install); `keda`: a KEDA ScaledObject (KEDA must be
    installed in the cluster)."""
    min_replicas: Annotated[int, Field(ge=0, le=100)] = 1
    """Fewest replicas; 0 lets an idle model stop (scale to zero)."""
    max_replicas: Annotated[int, Field(ge=1, le=100)]
    """Most replicas (each takes `gpu.count` GPUs)."""
    target_requests: Annotated[int, Field(ge=1, le=10_000)] = 8
    """Requests per replica to aim for: in flight to the model or held for it, as the gateways count
    them (vLLM's running plus waiting requests). A replica count is `ceil(demand / targetRequests)`."""
    target_waiting: Annotated[int, Field(ge=1, le=10_000)] | None = None
    """Requests waiting in the engines' queues per replica to aim for (vLLM's `num_requests_waiting`,
    read by the gateways from each replica's `/metrics`): with it the count is also at least
    `ceil(waiting / targetWaiting)`, so engines that queue (their batch or KV cache is full) get
    replicas even while the request count stays under `targetRequests`. `builtin` only."""
    scale_down_delay_seconds: Annotated[int, Field(ge=0, le=86_400)] = 300
    """How long the load must stay low before a replica is removed (no flapping under noisy load)."""
    idle_seconds: Annotated[int, Field(ge=0, le=86_400)] = 900
    """With `minReplicas: 0`: how long without any request before the model goes to 0 replicas."""
    hold_seconds: Annotated[int, Field(ge=1, le=900)] = 180
    """How long the gateway holds a request while the model has no ready replica (it is starting from
    zero); a stream gets SSE keep-alive comments meanwhile. Then: 503 with Retry-After."""
    prometheus_url: HttpUrl | None = None
    """With `engine: keda`: the Prometheus server that scrapes the gateways' `/metrics`, whose
    `aistack_gateway_model_demand` the ScaledObject queries."""

    @model_validator(mode="after")
    def _check(self) -> ModelAutoscaling:
        rules = RuleCollector()
        if self.min_replicas > self.max_replicas:
            rules.add(("minReplicas",),
                      f"{self.min_replicas} is greater than maxReplicas ({self.max_replicas})")
        if self.engine == "keda" and self.prometheus_url is None:
            rules.add(("prometheusUrl",), "required with engine 'keda': the Prometheus that scrapes the "
                                          "gateways (KEDA queries their demand metric there)")
        if self.engine != "keda" and self.prometheus_url is not None:
            rules.add(("prometheusUrl",), "only for engine 'keda' (the builtin autoscaler reads the load "
                                          "the gateways report)")
        if self.engine != "builtin" and self.target_waiting is not None:
            rules.add(("targetWaiting",), f"{self.target_waiting} is only for engine 'builtin' (KEDA's "
                                          "trigger reads the gateways' demand metric; use targetRequests)")
        rules.raise_if_any()
        return self


ADAPTER_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
ADAPTER_SOURCE_PATTERN = (
    r"^(hf://[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9_./-]+)?"
    r"|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?"
    rf"|{_SEGMENT}(/{_SEGMENT})*)$"
)
"""`hf://org/repo[@revision]`, `s3://bucket/prefix`, or a relative path (no `..`, no hidden
segment): the regular expression is RE2-safe (no look-ahead) so the CRD's `pattern` is the same."""
MAX_ADAPTERS = 64
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The ranks vLLM 0.32's `--max-lora-rank` accepts."""
DEFAULT_MAX_RANK: Final = 16
DEFAULT_MAX_ADAPTERS = 8
DEFAULT_ADAPTERS_PER_BATCH = 4


class Adapter(ApiModel):
    """A LoRA adapter of the base model, served under its own model name (`model` in a request)."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=ADAPTER_NAME_PATTERN)]
    """The model name clients use for this adapter; unique, and not the base's served name."""
    source: Annotated[str, Field(min_length=1, max_length=1024, pattern=ADAPTER_SOURCE_PATTERN)]
    """Where the adapter's files (peft's `adapter_config.json` and weights) come from:
    `hf://org/repo[@revision]` (the Hugging Face Hub, with `hfTokenSecretRef`), `s3://bucket/prefix`
    (read with the model pods' service account), or a path: in the cluster relative to the model
    cache volume, with `aistack up` relative to the manifest's folder. Pulled into the model cache
    by the same pull as the base weights."""
    rank: Annotated[int, Field(ge=1, le=512)] | None = None
    """The adapter's LoRA rank (`r` in `adapter_config.json`), when known: checked against
    `lora.maxRank` before anything is pulled. Unset: read from the pulled files, and an adapter over
    the maximum is reported Failed in `status.model.adapters`."""


class LoraSpec(ApiModel):
    """The engine's LoRA capacity. These settings, not the adapter list, make the engine's flags, so
    adding or removing an adapter never restarts an engine; changing them does."""

    model_config = cel_rules(
        rule(f"!has(self.maxAdaptersPerBatch) || self.maxAdaptersPerBatch <= "
             f"(has(self.maxAdapters) ? self.maxAdapters : {DEFAULT_MAX_ADAPTERS})",
             "maxAdaptersPerBatch must not be greater than maxAdapters", ".maxAdaptersPerBatch"),
    )

    max_rank: Literal[8, 16, 32, 64, 128, 256, 320, 512] = DEFAULT_MAX_RANK
    """The highest adapter rank the engine accepts (`--max-lora-rank`); memory is reserved for it."""
    max_adapters: Annotated[int, Field(ge=1, le=MAX_ADAPTERS)] = DEFAULT_MAX_ADAPTERS
    """Adapters each engine holds loaded at once (`--max-cpu-loras`): the slots. `adapters` may not
    list more, so no adapter is ever evicted and read from disk again on a request."""
    max_adapters_per_batch: Annotated[int, Field(ge=1, le=MAX_ADAPTERS)] | None = None
    """Different adapters in one batch on the accelerator (`--max-loras`); at most `maxAdapters`.
    Unset: 4, or `maxAdapters` when that is lower."""

    @model_validator(mode="after")
    def _check(self) -> LoraSpec:
        per_batch = self.max_adapters_per_batch
        if per_batch is not None and per_batch > self.max_adapters:
            raise violation(("maxAdaptersPerBatch",),
                            f"{per_batch} is greater than maxAdapters ({self.max_adapters})")
        return self

    @property
    def adapters_per_batch(self) -> int:
        if self.max_adapters_per_batch is not None:
            return self.max_adapters_per_batch
        return min(DEFAULT_ADAPTERS_PER_BATCH, self.max_adapters)


_RANK_LIMIT = f"(has(self.lora) && has(self.lora.maxRank) ? self.lora.maxRank : {DEFAULT_MAX_RANK})"
_SLOTS = f"(has(self.lora) && has(self.lora.maxAdapters) ? self.lora.maxAdapters : {DEFAULT_MAX_ADAPTERS})"


class VllmSpec(ApiModel):
    """How the self-hosted model is served by vLLM's OpenAI-compatible server."""

    model_config = cel_rules(
        rule(f"!has(self.adapters) || size(self.adapters) <= {_SLOTS}",
             "adapters lists more adapters than lora.maxAdapters (the engine's slots)", ".adapters"),
        rule("!has(self.adapters) || self.adapters.all(a, self.adapters.exists_one(b, b.name == a.name))",
             "adapter names must be unique", ".adapters"),
        rule(f"!has(self.adapters) || self.adapters.all(a, !has(a.rank) || a.rank <= {_RANK_LIMIT})",
             "an adapter's rank is greater than lora.maxRank", ".adapters"),
        rule("!has(self.autoscaling) || !has(self.replicas)",
             "replicas must be unset with autoscaling (the autoscaler owns the count, between "
             "autoscaling.minReplicas and maxReplicas)", ".replicas"),
        rule(
            '!has(self.gpu) || !has(self.gpu.count) || self.gpu.count >= 1',
            'vLLM needs at least 1 GPU per pod',
            '.gpu.count',
        ),
        rule(
            '!has(self.tensorParallelSize) || ((has(self.gpu) && has(self.gpu.count)) ? self.gpu.count : 1) '
            '% self.tensorParallelSize == 0',
            'tensorParallelSize must divide gpu.count',
            '.tensorParallelSize',
        ),
    )

    image: str = DEFAULT_VLLM_IMAGE
    """vLLM server image."""
    replicas: Annotated[int, Field(ge=0, le=100)] | None = None
    """Model server pods, a fixed count (1 when unset); must be unset with `autoscaling`."""
    autoscaling: ModelAutoscaling | None = None
    """Let the replica count follow the load, optionally down to zero; none: `replicas` pods always."""
    gpu: GpuSpec = Field(default_factory=GpuSpec)
    """GPUs per pod and node placement."""
    tensor_parallel_size: Annotated[int, Field(ge=1, le=16)] | None = None
    """Tensor-parallel degree; defaults to `gpu.count` and must divide it."""
    max_model_len: Annotated[int, Field(ge=128, le=10_000_000)] | None = None
    """Context length cap (`--max-model-len`); the model's own when unset."""
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9
    """Share of GPU memory vLLM may use (`--gpu-memory-utilization`)."""
    cache: ModelCache = Field(default_factory=ModelCache)
    """Model cache volume."""
    hf_token_secret_ref: SecretKeyRef | None = None
    """Secret key with a Hugging Face token, for gated models."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] | None = None
    """Weight and activation precision (`--dtype`); vLLM's `auto` (the model's own) when unset."""
    tool_call_parser: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=63)] | None = None
    """vLLM's tool-call parser for the model's chat format (`--enable-auto-tool-choice
    --tool-call-parser`), e.g. `hermes` for Qwen2.5; an agent with tools needs one."""
    extra_args: list[str] = Field(default_factory=list)
    """Further vLLM flags, e.g. `["--enable-prefix-caching"]`; checked against the parser of the
    pinned vLLM release (`aistack.api.vllm_flags`)."""
    routing: Routing = Field(default_factory=Routing)
    """How the gateway spreads requests over the replicas."""
    adapters: Annotated[list[Adapter], Field(max_length=MAX_ADAPTERS)] = Field(default_factory=list)
    """LoRA adapters served beside the base model, each under its own name. Pulled into the model
    cache and loaded into the running engines by the adapter agent beside each engine: adding or
    removing one restarts nothing (the first one turns LoRA on, which restarts the engines once)."""
    lora: LoraSpec | None = None
    """The engine's LoRA capacity (max rank, slots); defaults apply with `adapters`. Set it to keep
    LoRA on with no adapters listed, so that adding the first one restarts nothing either."""
    resources: Resources = Field(default_factory=Resources)
    """CPU and memory of the server container (GPUs come from `gpu.count`); unset keys default to
    requests `{cpu: 2, memory: 16Gi}` and limits `{memory: 32Gi}` (or the memory request, when
    higher)."""

    @model_validator(mode="after")
    def _check(self) -> VllmSpec:
        rules = RuleCollector()
        if self.gpu.count < 1:
            rules.add(("gpu", "count"), "vLLM needs at least 1 GPU per pod (got 0)")
        tp = self.tensor_parallel_size
        if tp is not None and self.gpu.count >= 1 and self.gpu.count % tp:
            rules.add(
                ("tensorParallelSize",),
                f"{tp} must divide gpu.count ({self.gpu.count}); use one of "
                f"{[d for d in range(1, self.gpu.count + 1) if self.gpu.count % d == 0]}",
            )
        for i, message in check_extra_args(self.extra_args):
            rules.add(("extraArgs", i), message)
        self._check_adapters(rules)
        if self.autoscaling is not None and self.replicas is not None:
            scaling = self.autoscaling
            rules.add(("replicas",), f"must be unset with autoscaling (got {self.replicas}): the autoscaler "
                                     f"owns the count, between minReplicas ({scaling.min_replicas}) and "
                                     f"maxReplicas ({scaling.max_replicas})")
        rules.raise_if_any()
        return self

    def _check_adapters(self, rules: RuleCollector) -> None:
        lora = self.lora_settings
        if len(self.adapters) > lora.max_adapters:
            rules.add(("adapters",), f"{len(self.adapters)} adapters, more than lora.maxAdapters "
                                     f"({lora.max_adapters}, the adapters each engine holds loaded): raise "
                                     f"lora.maxAdapters (up to {MAX_ADAPTERS}) or list fewer")
        seen: dict[str, int] = {}
        for i, adapter in enumerate(self.adapters):
            if adapter.name in seen:
                rules.add(("adapters", i, "name"), f"{adapter.name!r} is already the name of "
                                                   f"adapters[{seen[adapter.name]}]; each adapter needs a "
                                                   "name of its own")
            seen.setdefault(adapter.name, i)
            if adapter.rank is not None and adapter.rank > lora.max_rank:
                allowed = [r for r in LORA_RANKS if r >= adapter.rank]
                hint = f"raise lora.maxRank to {allowed[0]}" if allowed else "no engine setting takes it"
                rules.add(("adapters", i, "rank"), f"{adapter.rank} is greater than lora.maxRank "
                                                   f"({lora.max_rank}): {hint}")

    @property
    def lora_enabled(self) -> bool:
        """The engine starts with LoRA on: an adapter is listed or `lora` is set."""
        return bool(self.adapters) or self.lora is not None

    @property
    def lora_settings(self) -> LoraSpec:
        return self.lora if self.lora is not None else LoraSpec()

    @property
    def fixed_replicas(self) -> int:
        """The pinned count (without autoscaling)."""
        return 1 if self.replicas is None else self.replicas

    @property
    def most_replicas(self) -> int:
        """The most pods that can run at once: what a shared cache volume must serve."""
        return self.autoscaling.max_replicas if self.autoscaling is not None else self.fixed_replicas

    @property
    def effective_tensor_parallel_size(self) -> int:
        return self.tensor_parallel_size or max(self.gpu.count, 1)


class GenerationDefaults(ApiModel):
    """Sampling defaults applied when a request does not set them."""

    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    """Sampling temperature."""
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    """Cap on generated tokens."""
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    """Nucleus sampling."""


class ModelSpec(ApiModel):
    """The foundation model: the one layer every stack has."""

    model_config = cel_rules(
        rule(
            "self.provider != 'openai' || !has(self.vllm)",
            "vllm must not be set with provider 'openai' (no GPU, routing, autoscaling or adapter settings "
            "for an API model: the API spreads its own load, and LoRA adapters need a self-hosted vLLM)",
            '.vllm',
        ),
        rule(
            "!has(self.vllm) || !has(self.vllm.adapters) || "
            "self.vllm.adapters.all(a, a.name != (has(self.servedName) ? self.servedName : self.name))",
            "an adapter's name must differ from the base model's served name (servedName, or name)",
            '.vllm.adapters',
        ),
        rule(
            "self.provider != 'openai' || (has(self.openai) && has(self.openai.apiKeySecretRef))",
            "provider 'openai' needs openai.baseUrl and openai.apiKeySecretRef",
            '.openai',
        ),
        rule(
            "self.provider != 'vllm' || !has(self.openai)",
            "openai is only for provider 'openai'",
            '.openai',
        ),
        *CANARY_MODEL_RULES,
    )

    provider: Literal["vllm", "openai"]
    """`vllm`: self-hosted open-weight model on GPUs; `openai`: any OpenAI-compatible API."""
    name: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s]+$")]
    """Model name: a Hugging Face repo id for vLLM (`Qwen/Qwen2.5-7B-Instruct`), the API's
    model id for `openai` (`gpt-4o-mini`)."""
    served_name: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s]+$")] | None = None
    """Name clients use in `model`; defaults to `name`."""
    vllm: VllmSpec | None = None
    """vLLM serving settings; only with `provider: vllm` (defaults apply when omitted)."""
    openai: OpenAIEndpoint | None = None
    """The API endpoint; required with `provider: openai`."""
    fallback: OpenAIEndpoint | None = None
    """An OpenAI-compatible endpoint the gateway uses when the primary model fails."""
    defaults: GenerationDefaults = Field(default_factory=GenerationDefaults)
    """Sampling defaults."""
    canary: CanarySpec | None = None
    """A second version of the model taking a share of the requests, judged against this one
    (`status.model.canary` holds the weight in force)."""

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        rules = RuleCollector()
        if self.provider == "openai":
            if self.vllm is not None:
                what = "LoRA adapters need a self-hosted vLLM (provider 'vllm')" if self.vllm.adapters else \
                    "the API spreads its own load"
                rules.add(("vllm",),
                          "must not be set with provider 'openai' (no GPU, routing, autoscaling or adapter "
                          f"settings for an API model: {what})")
            if self.openai is None:
                rules.add(("openai",), "required with provider 'openai': baseUrl and apiKeySecretRef")
            elif self.openai.api_key_secret_ref is None:
                rules.add(("openai", "apiKeySecretRef"),
                          "required with provider 'openai' (a Secret name and key)")
        else:
            if self.openai is not None:
                rules.add(("openai",), "only with provider 'openai'; a vLLM model is served in the cluster")
            if self.vllm is None:
                self.vllm = VllmSpec()
            for i, adapter in enumerate(self.vllm.adapters):
                if adapter.name == self.public_name:
                    rules.add(("vllm", "adapters", i, "name"),
                              f"{adapter.name!r} is the base model's served name; an adapter needs a name "
                              "of its own (requests choose the base or an adapter by `model`)")
        if self.fallback is not None and self.fallback.model is None and self.provider == "vllm":
            rules.add(("fallback", "model"),
                      "required: the fallback API does not serve the self-hosted model's name")
        check_canary(self, rules)
        rules.raise_if_any()
        return self

    @property
    def public_name(self) -> str:
        """The name clients put in `model` and that the gateway lists in /v1/models."""
        return self.served_name or self.name
