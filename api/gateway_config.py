"""The gateway's configuration: rendered by the operator into a ConfigMap, built in memory by
`aistack up`, read and validated by the runtime.

It holds no secret. Each secret appears as the *name of an environment variable*
(`SecretKeyRef.env_name()`); the operator fills that variable from the Secret with
`secretKeyRef`, and locally the user exports it. The same config therefore works in a pod
and on a laptop, and can be shown, logged and diffed freely.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field

from aistack.api.collection import collection_spec
from aistack.api.config_hash import config_hash
from aistack.api.conventions import GUARDRAILS_PORT, VLLM_PORT, experiment_name
from aistack.api.types import ApiModel, SecretKeyRef
from aistack.api.v1alpha1 import AIStack
from aistack.api.v1alpha1.guardrails import GuardrailsSpec
from aistack.api.v1alpha1.model import GenerationDefaults
from aistack.api.v1alpha1.orchestration import Timeouts
from aistack.api.v1alpha1.retrieval import Chunking, Distance

GATEWAY_CONFIG_VERSION: Final = 1


class Replicas(ApiModel):
    """The replicas of a self-hosted model: the gateway spreads requests over them
    (`aistack.runtime.gateway.routing`) instead of leaving it to a Service's connection balancing."""

    policy: Literal["prefix", "least-busy", "round-robin"] = "prefix"
    """`prefix`: a prompt's leading text keeps to the replica holding its KV cache, within bounded
    loads; `least-busy`: the fewest requests in flight; `round-robin`."""
    dns_name: str | None = None
    """A headless Service's name: its A records are the model's ready pods (no Kubernetes API
    rights needed); read again every `refreshSeconds`."""
    port: int = 8000
    """The replicas' port (with `dnsName`)."""
    urls: list[str] = Field(default_factory=list)
    """Fixed replicas, base URLs with `/v1` (`aistack up`'s engines)."""
    refresh_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    """How often `dnsName` is resolved again."""


class Upstream(ApiModel):
    """An OpenAI-compatible model endpoint."""

    base_url: str
    """Base URL including `/v1`."""
    model: str
    """Model name sent upstream."""
    api_key_env: str | None = None
    """Environment variable holding the API key."""
    timeout_seconds: float = 60.0
    """Whole-request timeout."""
    replicas: Replicas | None = None
    """Replicas to spread requests over; `baseUrl` alone (one Service) when unset."""
    adapters: list[str] | None = None
    """LoRA adapters this upstream serves besides `model` (`spec.model.vllm.adapters`): a request
    naming one is sent with that name, to a replica that holds it, and never to the fallback."""


class ModelScaling(ApiModel):
    """The self-hosted model autoscales (`spec.model.vllm.autoscaling`)."""

    target_requests: int
    """Requests per replica the autoscaler aims for: how much demand is worth reporting."""
    target_waiting: int | None = None
    """Requests queued in the engines per replica the autoscaler aims for (`targetWaiting`): how much
    of a change in the engines' queue is worth reporting; None: the queue is not reported."""
    hold_seconds: float | None = None
    """With `minReplicas: 0`: how long a request waits while the model has no ready replica (it is
    starting from zero) before a 503 with Retry-After; None: no hold."""
    report_lease: str | None = None
    """The Lease in the stack's namespace the gateway writes its load on (`aistack.api.model_load`),
    for the operator's built-in autoscaler; None with KEDA (which reads the demand metric)."""


class CanaryConfig(ApiModel):
    """A second version of the model taking `weight` percent of the requests (`spec.model.canary`)."""

    upstream: Upstream
    """Where the canary's requests go (its own replicas, the stable's with an adapter's name, or
    another model at the API); the stable's fallback stays the fallback."""
    weight: Annotated[float, Field(ge=0, le=100)]
    """The weight in force: the operator's (`status.model.canary.weight`), not always the spec's."""
    sticky_by: Literal["apiKey", "tenant", "header"] | None = None
    sticky_header: str | None = None
    seed: int | None = None
    """Seeds the draw for requests without a sticky key (tests); None: the system's randomness."""
    window_seconds: float = 300.0
    """The analysis window the gateway counts each version's calls over."""
    report_lease: str | None = None
    """The Lease the gateway writes its per-version window on (`aistack.api.canary_report`); None:
    no analysis."""


class ModelConfig(ApiModel):
    """The model the gateway serves under `public_name`."""

    public_name: str
    """Name in /v1/models and in requests."""
    primary: Upstream
    """Where requests go."""
    fallback: Upstream | None = None
    """Where they go when the primary fails before the first byte."""
    defaults: GenerationDefaults = Field(default_factory=GenerationDefaults)
    """Sampling defaults."""
    scaling: ModelScaling | None = None
    """How the gateway helps the model autoscale: holds requests while it is at zero, reports its load."""
    answers: Literal["generative", "extractive"] = "generative"
    """`extractive`: with passages retrieved, the model only chooses one of their sentences, quoted
    with its citation (`aistack.runtime.orchestration.extractive`); needs an engine that honours
    `structured_outputs.choice` (vLLM, the offline server). `aistack up` sets it for the offline
    model, whose own writing is not to be trusted; no AIStack field sets it."""
    notice: str | None = None
    """Sent with every answer in the `x-aistack-notice` header, logged and traced, never in the
    answer's text: `aistack up` sets it for the offline model (which model answers instead)."""
    canary: CanaryConfig | None = None
    """A second version taking a share of the requests; None: the primary answers all."""


class EmbedderConfig(ApiModel):
    """The embedding model."""

    provider: Literal["local", "openai"]
    model: str
    dimension: int
    base_url: str | None = None
    api_key_env: str | None = None
    batch_size: int = 64
    max_input_tokens: int | None = None
    """As declared (`retrieval.embedder.maxInputTokens`); `embedder_max_input_tokens()` resolves it."""


class RetrievalConfig(ApiModel):
    """Where and how to search."""

    qdrant_url: str | None = None
    """Qdrant server URL; `None` means embedded storage at `qdrant_path`."""
    qdrant_path: str | None = None
    """Embedded Qdrant folder (local runs)."""
    qdrant_api_key_env: str | None = None
    collection: str
    distance: Distance
    embedder: EmbedderConfig
    top_k: int
    score_threshold: float | None = None
    max_context_tokens: int
    tenant_field: str | None = None
    chunking: Chunking = Field(default_factory=Chunking)


class ToolConfig(ApiModel):
    """A tool as the gateway calls it."""

    name: str
    description: str
    endpoint: str
    method: Literal["GET", "POST"]
    parameters: dict[str, object]
    auth_env: str | None = None
    timeout_seconds: float


class OrchestrationConfig(ApiModel):
    mode: Literal["pipeline", "agent"]
    system_prompt: str | None = None
    prompt_template: str | None = None
    tools: list[ToolConfig] = Field(default_factory=list)
    max_steps: int
    timeouts: Timeouts


class GuardrailsConfig(ApiModel):
    """The rails and where the LLM rails run."""

    rails: GuardrailsSpec
    """The declared rails and their settings."""
    engine: Literal["inprocess", "sidecar"]
    """NeMo Guardrails in the gateway process (local) or the sidecar's HTTP API (pods)."""
    sidecar_url: str | None = None
    """Sidecar base URL when engine is `sidecar`."""
    config_id: str = "aistack"
    """Config id served by the sidecar."""


class TracingConfig(ApiModel):
    tracking_uri: str
    experiment: str
    sampling: Annotated[float, Field(ge=0, le=1)] = 1.0
    token_env: str | None = None
    queue_size: Annotated[int, Field(ge=1)] = 1000


class ServerConfig(ApiModel):
    api_keys_env: str | None = None
    """Environment variable holding the accepted API keys (one per line, `key [tenant]`)."""
    api_keys_secret_ref: SecretKeyRef | None = None
    """The manifest's `spec.gateway.apiKeysSecretRef` that fills `api_keys_env` (names only): an
    error about the variable can then say which Secret and key to fix. Absent in configs
    rendered before it existed and in hand-written ones."""
    tenant_header: str = "X-Tenant"
    max_body_bytes: int = 1024 * 1024
    sse_keepalive_seconds: Annotated[float, Field(gt=0, le=300)] | None = None
    """A stream that has sent nothing for this long gets a `: keep-alive` comment, so a proxy's
    idle timeout (often 60 s) does not cut it while the answer is held or generated; None: 15."""


class GatewayConfig(ApiModel):
    """Everything the runtime needs to serve one stack."""

    version: Literal[1] = GATEWAY_CONFIG_VERSION
    name: str
    namespace: str
    stage: str
    config_hash: str
    model: ModelConfig
    retrieval: RetrievalConfig | None = None
    orchestration: OrchestrationConfig
    guardrails: GuardrailsConfig | None = None
    tracing: TracingConfig | None = None
    server: ServerConfig = Field(default_factory=ServerConfig)


class Endpoints(ApiModel):
    """Target-specific addresses: in-cluster Service URLs for pods, loopback/paths locally."""

    model_base_url: str | None = None
    """Base URL of the self-hosted model (vLLM Service); unused for provider openai."""
    model_replicas_dns: str | None = None
    """The self-hosted model's headless Service (its ready pods), for the gateway's routing."""
    model_replica_urls: list[str] = Field(default_factory=list)
    """Fixed replicas of the self-hosted model (`aistack up`'s engines)."""
    model_load_lease: str | None = None
    """The Lease the gateway reports the model's load on (the operator's built-in autoscaler)."""
    canary_base_url: str | None = None
    """The vLLM canary's Service (`spec.model.canary` with its own Deployment); None where it does
    not run (`aistack up`), and then the gateway config has no such canary."""
    canary_replicas_dns: str | None = None
    """The vLLM canary's headless Service (its ready pods)."""
    qdrant_url: str | None = None
    qdrant_path: str | None = None
    tracking_uri: str | None = None
    guardrails_engine: Literal["inprocess", "sidecar"] = "sidecar"
    guardrails_url: str = f"http://127.0.0.1:{GUARDRAILS_PORT}"


def _env(ref: SecretKeyRef | None) -> str | None:
    return ref.env_name() if ref is not None else None


def _scaling(stack: AIStack, endpoints: Endpoints) -> ModelScaling | None:
    vllm = stack.spec.model.vllm
    if stack.spec.model.provider != "vllm" or vllm is None or vllm.autoscaling is None:
        return None
    scaling = vllm.autoscaling
    return ModelScaling(target_requests=scaling.target_requests, target_waiting=scaling.target_waiting,
                        hold_seconds=scaling.hold_seconds if scaling.min_replicas == 0 else None,
                        report_lease=endpoints.model_load_lease if scaling.engine == "builtin" else None)


def _canary(stack: AIStack, endpoints: Endpoints, primary: Upstream,
            weight: int | None) -> CanaryConfig | None:
    """The canary's upstream and the weight in force (`weight`; the spec's when None)."""
    m = stack.spec.model
    canary = m.canary
    if canary is None:
        return None
    if m.provider == "openai" or canary.adapter is not None:
        upstream = primary.model_copy(update={"model": canary.adapter or canary.name or primary.model})
    elif endpoints.canary_base_url is None:
        return None  # its Deployment does not run here (aistack up serves the stable model only)
    else:
        replicas = None
        if endpoints.canary_replicas_dns and m.vllm is not None:
            replicas = Replicas(policy=m.vllm.routing.policy, dns_name=endpoints.canary_replicas_dns,
                                port=VLLM_PORT)
        upstream = primary.model_copy(update={"base_url": endpoints.canary_base_url, "replicas": replicas})
    analysis = canary.analysis
    return CanaryConfig(upstream=upstream, weight=canary.weight if weight is None else weight,
                        sticky_by=canary.sticky_by, sticky_header=canary.sticky_header,
                        window_seconds=analysis.window_seconds if analysis is not None else 300.0,
                        report_lease=endpoints.model_load_lease if analysis is not None else None)


def build_gateway_config(stack: AIStack, endpoints: Endpoints, *,
                         canary_weight: int | None = None) -> GatewayConfig:
    """Pure: the gateway config of `stack` wired to `endpoints`; `canary_weight` is the canary's
    weight in force (the operator's), the spec's when None."""
    spec = stack.spec
    m = spec.model
    if m.provider == "openai":
        assert m.openai is not None  # guaranteed by ModelSpec validation
        primary = Upstream(base_url=str(m.openai.base_url).rstrip("/"), model=m.openai.model or m.name,
                           api_key_env=_env(m.openai.api_key_secret_ref),
                           timeout_seconds=m.openai.timeout_seconds)
    else:
        if endpoints.model_base_url is None:
            raise ValueError("a vLLM model needs endpoints.model_base_url")
        replicas = None
        if m.vllm is not None and (endpoints.model_replicas_dns or endpoints.model_replica_urls):
            replicas = Replicas(policy=m.vllm.routing.policy, dns_name=endpoints.model_replicas_dns,
                                port=VLLM_PORT, urls=endpoints.model_replica_urls)
        primary = Upstream(base_url=endpoints.model_base_url, model=m.public_name,
                           timeout_seconds=spec.orchestration.timeouts.model_seconds, replicas=replicas,
                           adapters=[a.name for a in m.vllm.adapters] if m.vllm and m.vllm.adapters else None)
    fallback = None
    if m.fallback is not None:
        fallback = Upstream(base_url=str(m.fallback.base_url).rstrip("/"), model=m.fallback.model or m.name,
                            api_key_env=_env(m.fallback.api_key_secret_ref),
                            timeout_seconds=m.fallback.timeout_seconds)
    retrieval = None
    if spec.retrieval is not None:
        r = spec.retrieval
        e = r.embedder
        external = r.vector_store.external
        store = collection_spec(stack)
        retrieval = RetrievalConfig(
            qdrant_url=str(external.url).rstrip("/") if external else endpoints.qdrant_url,
            qdrant_path=None if external else endpoints.qdrant_path,
            qdrant_api_key_env=_env(external.api_key_secret_ref) if external else None,
            collection=store.name,
            distance=store.distance,
            embedder=EmbedderConfig(provider=e.provider, model=e.model, dimension=store.dimension,
                                    base_url=str(e.base_url).rstrip("/") if e.base_url else None,
                                    api_key_env=_env(e.api_key_secret_ref), batch_size=e.batch_size,
                                    max_input_tokens=e.max_input_tokens),
            top_k=r.top_k, score_threshold=r.score_threshold, max_context_tokens=r.max_context_tokens,
            tenant_field=store.tenant_field, chunking=r.chunking,
        )
    o = spec.orchestration
    orchestration = OrchestrationConfig(
        mode=o.mode, system_prompt=o.system_prompt, prompt_template=o.prompt_template,
        tools=[ToolConfig(name=t.name, description=t.description, endpoint=str(t.endpoint), method=t.method,
                          parameters=t.parameters, auth_env=_env(t.auth_secret_ref),
                          timeout_seconds=t.timeout_seconds) for t in o.tools],
        max_steps=o.max_steps, timeouts=o.timeouts,
    )
    guardrails = None
    if spec.guardrails is not None:
        guardrails = GuardrailsConfig(
            rails=spec.guardrails, engine=endpoints.guardrails_engine,
            sidecar_url=endpoints.guardrails_url if endpoints.guardrails_engine == "sidecar" else None,
        )
    tracing = None
    if spec.observability is not None:
        obs = spec.observability
        ext = obs.mlflow.external
        uri = ext.tracking_uri if ext else endpoints.tracking_uri
        if uri is None:
            raise ValueError("managed MLflow needs endpoints.tracking_uri")
        tracing = TracingConfig(tracking_uri=uri,
                                experiment=experiment_name(namespace=stack.namespace, name=stack.name,
                                                           configured=obs.experiment),
                                sampling=obs.trace_sampling,
                                token_env=_env(ext.token_secret_ref) if ext else None)
    return GatewayConfig(
        name=stack.name, namespace=stack.namespace, stage=spec.stage, config_hash=config_hash(spec),
        model=ModelConfig(public_name=m.public_name, primary=primary, fallback=fallback, defaults=m.defaults,
                          scaling=_scaling(stack, endpoints),
                          canary=_canary(stack, endpoints, primary, canary_weight)),
        retrieval=retrieval, orchestration=orchestration, guardrails=guardrails, tracing=tracing,
        server=ServerConfig(api_keys_env=_env(spec.gateway.api_keys_secret_ref),
                            api_keys_secret_ref=spec.gateway.api_keys_secret_ref,
                            tenant_header=spec.gateway.tenant_header,
                            max_body_bytes=spec.gateway.max_body_bytes),
    )
