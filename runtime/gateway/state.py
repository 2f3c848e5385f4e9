"""Everything built from one config: the unit a reload swaps atomically."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx

from aistack.api.gateway_config import GatewayConfig
from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.gateway.auth import ApiKeys
from aistack.runtime.gateway.canary import CanaryReporter, Split, VersionWindow
from aistack.runtime.core.kube_api import KUBE_API_ENV, kube_api
from aistack.runtime.gateway.demand import Demand, LeaseReporter
from aistack.runtime.gateway.upstream import HttpPool, ModelClient
from aistack.runtime.guardrails.guard import Guard
from aistack.runtime.orchestration.agent import Toolbox
from aistack.runtime.tracing import Tracer

log = logging.getLogger("aistack.gateway")


@dataclass
class Canary:
    """The second version of the model and how requests are split between the two."""

    split: Split
    model: ModelClient
    window: VersionWindow
    reporter: CanaryReporter | None


@dataclass
class GatewayState:
    config: GatewayConfig
    model: ModelClient
    guard: Guard | None
    toolbox: Toolbox | None
    tracer: Tracer
    api_keys: ApiKeys | None
    canary: Canary | None = None

    def client(self, version: str) -> ModelClient:
        """The model client of `version` (`stable`, or `canary` under a split)."""
        return self.canary.model if version == "canary" and self.canary is not None else self.model

    async def aclose(self, *, keep_tracer: bool = False) -> None:
        if self.canary is not None and self.canary.reporter is not None:
            await self.canary.reporter.aclose()
        if self.model.demand is not None and self.model.demand.reporter is not None:
            await self.model.demand.reporter.aclose()
        if self.guard is not None and self.guard.llm is not None:
            await self.guard.llm.aclose()
        if not keep_tracer:
            await asyncio.to_thread(self.tracer.close)


def trace_tags(config: GatewayConfig) -> dict[str, str]:
    return {"aistack.stack": config.name, "aistack.namespace": config.namespace,
            "aistack.stage": config.stage,
            "aistack.config_hash": config.config_hash, "aistack.model": config.model.public_name}


def _demand(config: GatewayConfig, *, pool: HttpPool, metrics: GatewayMetrics) -> Demand | None:
    """The model's demand counter where it autoscales, with its report to the operator's autoscaler."""
    scaling = config.model.scaling
    if scaling is None:
        return None
    reporter = None
    if scaling.report_lease is not None:
        api = kube_api()
        if api is None:
            log.warning("the model autoscales on the load this gateway reports, but no Kubernetes API is "
                        "known here (no KUBERNETES_SERVICE_HOST or %s): not reporting", KUBE_API_ENV)
        else:
            reporter = LeaseReporter(api=api, namespace=config.namespace, lease=scaling.report_lease,
                                     target=scaling.target_requests, session=pool.session,
                                     target_waiting=scaling.target_waiting)
    return Demand(scaling=scaling, stack=config.name, namespace=config.namespace, metrics=metrics,
                  reporter=reporter)


def build_state(config: GatewayConfig, *, http: httpx.AsyncClient, pool: HttpPool, metrics: GatewayMetrics,
                previous: GatewayState | None = None) -> GatewayState:
    """Build (and so validate) every part; raises ValueError with what to fix.

    Blocking (NeMo Guardrails loads in-process): call it from a worker thread on reloads.
    """
    server = config.server
    api_keys = ApiKeys.from_env(server.api_keys_env,
                                secret=server.api_keys_secret_ref) if server.api_keys_env else None
    if api_keys is not None and api_keys.without_tenant and config.retrieval is not None:
        log.warning("%d of the gateway's API keys name no tenant: a caller with one reads any tenant's "
                    "documents by sending the %s header. Give each key its tenant ('key tenant' per line) "
                    "unless it is meant to see every tenant", api_keys.without_tenant, server.tenant_header)
    canary = None
    window = None
    if config.model.canary is not None:
        window = VersionWindow(config.model.canary.window_seconds)
    model = ModelClient(primary=config.model.primary, fallback=config.model.fallback, http=pool,
                        metrics=metrics, demand=_demand(config, pool=pool, metrics=metrics),
                        version="stable" if window is not None else None, window=window)
    if config.model.canary is not None and window is not None:
        canary = Canary(split=Split(config.model.canary),
                        model=ModelClient(primary=config.model.canary.upstream,
                                          fallback=config.model.fallback, http=pool, metrics=metrics,
                                          version="canary", window=window),
                        window=window, reporter=_canary_reporter(config, pool=pool, window=window))
    toolbox = None
    if config.orchestration.mode == "agent" and config.orchestration.tools:
        toolbox = Toolbox(tools=config.orchestration.tools, http=http)
    guard = Guard.from_config(config, http=http)
    if previous is not None and previous.config.tracing == config.tracing:
        tracer = previous.tracer
        tracer.tags = trace_tags(config)
    else:
        tracer = Tracer(config=config.tracing, tags=trace_tags(config), metrics=metrics)
    return GatewayState(config=config, model=model, guard=guard, toolbox=toolbox, tracer=tracer,
                        api_keys=api_keys, canary=canary)


def _canary_reporter(config: GatewayConfig, *, pool: HttpPool,
                     window: VersionWindow) -> CanaryReporter | None:
    """The writer of this pod's per-version window for the operator's analysis (started by the
    first request that is split, in the serving loop)."""
    canary = config.model.canary
    if canary is None or canary.report_lease is None:
        return None
    api = kube_api()
    if api is None:
        log.warning("the canary is analysed on what this gateway reports, but no Kubernetes API is known "
                    "here (no KUBERNETES_SERVICE_HOST or %s): not reporting", KUBE_API_ENV)
        return None
    return CanaryReporter(api=api, namespace=config.namespace, lease=canary.report_lease, window=window,
                          session=pool.session)
