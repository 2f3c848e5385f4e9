"""The gateway app: `create_app(config, retriever=..., embedder=...)` builds a FastAPI app that
serves one stack, OpenAI-compatible.

`aistack up` calls it with its own retriever and embedder; the pod entry point
(`python -m aistack.runtime`) calls it with the config file from `AISTACK_GATEWAY_CONFIG`
and watches that file for changes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aistack.api.gateway_config import GatewayConfig
from aistack.runtime.core.config import load_config
from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.gateway.auth import authenticate
from aistack.runtime.gateway.chat import handle_chat
from aistack.runtime.gateway.completions import handle_completion
from aistack.runtime.gateway.responses import ResponsesRequest, handle_responses
from aistack.runtime.gateway.engine_metrics import (SCRAPE_INTERVAL_S, EngineLoad, EngineMetrics,
                                                   EngineSnapshot)
from aistack.runtime.gateway.errors import INTERNAL_ERROR, GatewayError, error_response, install_handlers
from aistack.runtime.gateway.heap import settle_heap
from aistack.runtime.gateway.jsonio import json_response
from aistack.runtime.gateway.reload import ConfigWatcher
from aistack.runtime.gateway.schemas import ChatRequest, CompletionRequest, EmbeddingsRequest, parse_body
from aistack.runtime.gateway.state import GatewayState, build_state
from aistack.runtime.gateway.streaming import KEEPALIVE_S, with_keepalive
from aistack.runtime.gateway.upstream import HttpPool
from aistack.runtime.retrieval.contracts import Embedder, Retriever

log = logging.getLogger("aistack.gateway")
ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/models", "/v1/embeddings",
          "/healthz", "/readyz", "/metrics"}


class StateHolder:
    """The current state; a reload replaces `current` in one assignment."""

    def __init__(self, state: GatewayState) -> None:
        self.current = state


class _BodyTooLarge(GatewayError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes; send less (e.g. fewer or "
                              "shorter messages)", code="request_too_large")


class EdgeMiddleware:
    """Pure ASGI (cheap): request metrics with the final status, the body size limit, and an
    unexpected error answered as the OpenAI 500 on a connection that stays open."""

    def __init__(self, app: Any, *, holder: StateHolder, metrics: GatewayMetrics) -> None:
        self.app = app
        self.holder = holder
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        limit = self.holder.current.config.server.max_body_bytes
        started = time.perf_counter()
        status = 500
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _send_error(send, _BodyTooLarge(limit))
                self.metrics.observe_request(route, 413, time.perf_counter() - started)
                return
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        responded = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            # Answered here, not re-raised: past this middleware Starlette's error middleware would
            # send the 500 and re-raise, and the server then closes the keep-alive connection.
            if responded:
                raise  # a stream already under way can only be cut
            log.exception("unexpected error on %s", scope["path"])
            status = 500
            await _send_error(send, GatewayError(500, INTERNAL_ERROR, code="internal_error"))
        finally:
            self.metrics.observe_request(route, status, time.perf_counter() - started)


async def _send_error(send: Any, err: GatewayError) -> None:
    response = error_response(err)
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def create_app(config: GatewayConfig | None = None, *, config_path: Path | None = None,
               retriever: Retriever | None = None, embedder: Embedder | None = None,
               http: httpx.AsyncClient | None = None, reload_interval_s: float = 1.0,
               engine_metrics_interval_s: float = SCRAPE_INTERVAL_S) -> FastAPI:
    """Build the gateway for `config` (or the file at `config_path`, watched for changes).

    Everything that can be wrong with the config or its secrets fails here, at startup, with
    a message that says what to set. `http` lets a caller share or tune the connection pool.
    What the handlers below need lives on `app.state`: the `StateHolder`, the metrics, the
    retriever and embedder, the HTTP clients, the config watcher (None without a file) and the
    upstream engines' metrics (`EngineMetrics`, read every `engine_metrics_interval_s` while the
    app runs).
    """
    if (config is None) == (config_path is None):
        raise ValueError("pass exactly one of config or config_path")
    if config is None:
        assert config_path is not None
        config = load_config(config_path)
    metrics = GatewayMetrics()
    client = http or httpx.AsyncClient(limits=httpx.Limits(max_connections=1000,
                                                           max_keepalive_connections=200),
                                       timeout=httpx.Timeout(60.0, connect=5.0))
    pool = HttpPool()
    holder = StateHolder(build_state(config, http=client, pool=pool, metrics=metrics))
    _publish_info(metrics, config)

    # FastAPI's own OpenTelemetry is off: requests are traced to MLflow and measured in /metrics,
    # and its per-request provider checks (and spans, once any library sets a global provider)
    # would be a second bill on the hot path.
    app = FastAPI(title="aistack gateway", lifespan=_lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.retriever = retriever
    app.state.embedder = embedder
    app.state.http = client
    app.state.own_http = http is None
    app.state.pool = pool
    app.state.watcher = None
    app.state.engine_metrics = EngineMetrics(http=client, metrics=metrics,
                                             targets=lambda: holder.current.model.targets,
                                             replicas=functools.partial(_routed_replicas, holder),
                                             on_read=functools.partial(_engines_read, holder),
                                             interval_s=engine_metrics_interval_s)
    if config_path is not None:
        app.state.watcher = ConfigWatcher(path=config_path, apply=functools.partial(_apply_config, app),
                                          interval_s=reload_interval_s,
                                          on_refused=lambda _: metrics.config_reloads.labels("refused").inc())
    install_handlers(app)
    # Plain routes, not FastAPI's dependency-injected ones: every handler takes the request and
    # validates its body itself (`parse_body`), so the injection layer was pure per-request cost.
    for path, endpoint, method in (("/v1/chat/completions", chat_completions, "POST"),
                                   ("/v1/completions", completions, "POST"),
                                   ("/v1/responses", responses, "POST"),
                                   ("/v1/models", models, "GET"),
                                   ("/v1/embeddings", embeddings, "POST"), ("/healthz", healthz, "GET"),
                                   ("/readyz", readyz, "GET"), ("/metrics", prometheus, "GET")):
        app.add_route(path, endpoint, methods=[method], include_in_schema=False)
    app.add_middleware(EdgeMiddleware, holder=holder, metrics=metrics)
    return app


def _routed_replicas(holder: StateHolder, role: str) -> list[str] | None:
    """The replicas the gateway routes `role` to now (None: the upstream has no replicas)."""
    pool = holder.current.model.pools.get(role)
    return None if pool is None else pool.router.replicas


def _engines_read(holder: StateHolder, role: str, snapshot: EngineSnapshot,
                  replicas: Mapping[str, EngineSnapshot]) -> None:
    """The autoscaled model's engines were read: their queue and KV-cache usage go to `Demand`."""
    demand = holder.current.model.demand
    if role != "primary" or demand is None:
        return
    loads = [r for r in replicas.values() if isinstance(r, EngineLoad)] or \
        ([snapshot] if isinstance(snapshot, EngineLoad) else [])
    demand.engines(waiting=sum(load.waiting for load in loads),
                   kv=max((load.kv_cache_usage for load in loads), default=None))


async def _apply_config(app: FastAPI, new: GatewayConfig) -> None:
    """A reload: build the new state off the event loop, swap it in, close the old one once the
    requests that hold it have had their time (the request timeout)."""
    holder: StateHolder = app.state.holder
    metrics: GatewayMetrics = app.state.metrics
    old = holder.current
    state = await asyncio.to_thread(build_state, new, http=app.state.http, pool=app.state.pool,
                                    metrics=metrics,
                                    previous=old)
    holder.current = state
    metrics.config_reloads.labels("applied").inc()
    _publish_info(metrics, new, previous=old.config)
    settle_heap()
    drain = old.config.orchestration.timeouts.request_seconds
    asyncio.get_running_loop().call_later(
        drain, lambda: asyncio.ensure_future(_retire(old, keep_tracer=state.tracer is old.tracer)))


async def _retire(old: GatewayState, *, keep_tracer: bool) -> None:
    await old.aclose(keep_tracer=keep_tracer)
    settle_heap()  # the old state was frozen with the rest: let its cycles go


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    watcher: ConfigWatcher | None = app.state.watcher
    if watcher is not None:
        watcher.start()
    engine_metrics = asyncio.create_task(app.state.engine_metrics.run())
    settle_heap()  # everything long-lived is built: the app, its state, the caller's models
    try:
        yield
    finally:
        engine_metrics.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await engine_metrics
        if watcher is not None:
            await watcher.stop()
        await app.state.holder.current.aclose()
        await app.state.pool.aclose()
        if app.state.own_http:
            await app.state.http.aclose()


# The handlers read `app.state` by key: an attribute read reaches Starlette's `State.__getattr__`
# only after the normal lookup has failed, building and dropping an AttributeError each time
# (measured: ~0.5 us a read against ~0.08 us by key; four reads were 1.7% of a chat request).
def _model_endpoint(body: type[ChatRequest | CompletionRequest | ResponsesRequest],
                    handle: Callable[..., Awaitable[Response]], *,
                    documents: bool) -> Callable[[Request], Awaitable[Response]]:
    """A model endpoint: the caller authenticated, the body validated as `body`, answered by `handle`
    (given the stack's retriever and embedder when `documents`), a stream with keep-alives."""

    async def endpoint(request: Request) -> Response:
        app_state = request.app.state
        state: GatewayState = app_state["holder"].current
        caller, tenant = authenticate(request, state)
        req = parse_body(body, await request.body())
        extra = {"retriever": app_state["retriever"], "embedder": app_state["embedder"]} if documents else {}
        answer = handle(state=state, metrics=app_state["metrics"], req=req, caller=caller, tenant=tenant,
                        **extra)
        if req.stream:
            interval_s = state.config.server.sse_keepalive_seconds or KEEPALIVE_S
            return await with_keepalive(answer, interval_s=interval_s)
        return await answer

    return endpoint


chat_completions = _model_endpoint(ChatRequest, handle_chat, documents=True)
completions = _model_endpoint(CompletionRequest, handle_completion, documents=False)
responses = _model_endpoint(ResponsesRequest, handle_responses, documents=True)


async def models(request: Request) -> Response:
    state: GatewayState = request.app.state["holder"].current
    authenticate(request, state)
    embedder: Embedder | None = request.app.state["embedder"]
    model = state.config.model
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "aistack"}
            for name in (model.public_name, *(model.primary.adapters or []))]
    if embedder is not None:
        data.append({"id": embedder.model, "object": "model", "created": 0, "owned_by": "aistack"})
    return json_response({"object": "list", "data": data})


async def embeddings(request: Request) -> Response:
    authenticate(request, request.app.state["holder"].current)
    embedder: Embedder | None = request.app.state["embedder"]
    req = parse_body(EmbeddingsRequest, await request.body())
    if embedder is None:
        raise GatewayError(404, f"The model `{req.model}` does not exist; this stack serves no embeddings "
                                "(declare spec.retrieval.embedder)", code="model_not_found", param="model")
    if req.model != embedder.model:
        raise GatewayError(404, f"The model `{req.model}` does not exist; embeddings are served by "
                                f"`{embedder.model}`", code="model_not_found", param="model")
    if req.dimensions is not None and req.dimensions != embedder.dimension:
        raise GatewayError(400, f"dimensions must be {embedder.dimension} for `{embedder.model}`",
                           param="dimensions", code="unsupported_value")
    texts = [req.input] if isinstance(req.input, str) else req.input
    started = time.perf_counter()
    try:
        vectors = await embedder.embed(texts)
    except Exception as err:
        log.exception("embedder failed")
        raise GatewayError(503, f"the embedder failed ({type(err).__name__}); retry later",
                           code="embedder_unavailable") from err
    request.app.state["metrics"].observe_step("embedding", time.perf_counter() - started)
    tokens = sum(len(t.split()) for t in texts)
    encode = _base64_floats if req.encoding_format == "base64" else list
    return json_response({"object": "list", "model": embedder.model,
                         "data": [{"object": "embedding", "index": i, "embedding": encode(v)}
                                  for i, v in enumerate(vectors)],
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    state: GatewayState = request.app.state["holder"].current
    retriever: Retriever | None = request.app.state["retriever"]
    checks: dict[str, bool] = {"model": await state.model.models_reachable()}
    if state.config.retrieval is not None:
        checks["retrieval"] = retriever is not None and await _safe_ready(retriever)
    if state.guard is not None and state.guard.llm is not None:
        checks["guardrails"] = await state.guard.llm.ready()
    ready = all(checks.values())
    return json_response({"status": "ready" if ready else "not ready", "checks": checks,
                          "config_hash": state.config.config_hash}, status=200 if ready else 503)


async def prometheus(request: Request) -> Response:
    request.app.state["holder"].current.tracer.sync_metrics()
    return Response(generate_latest(request.app.state["metrics"].registry), media_type=CONTENT_TYPE_LATEST)


def _base64_floats(vector: Any) -> str:
    """The OpenAI `encoding_format: base64` form: little-endian float32, base64 (the SDK's default)."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


async def _safe_ready(retriever: Retriever) -> bool:
    try:
        return bool(await asyncio.wait_for(retriever.ready(), timeout=2.0))
    except Exception:
        return False


def _publish_info(metrics: GatewayMetrics, config: GatewayConfig,
                  previous: GatewayConfig | None = None) -> None:
    if previous is not None:
        with contextlib.suppress(KeyError):
            metrics.config_info.remove(previous.name, previous.stage, previous.config_hash)
    metrics.config_info.labels(config.name, config.stage, config.config_hash).set(1)
