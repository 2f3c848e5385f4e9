"""Helpers to run a real gateway on loopback in tests and benchmarks, with small in-memory
implementations of the retrieval contracts (`ListRetriever`, `HashEmbedder`)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from aistack.api.gateway_config import GatewayConfig
from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.gateway import create_app
from aistack.runtime.retrieval.contracts import Passage
from aistack.runtime.retrieval.tokens import EstimatedMeter
from aistack.runtime.tracing import NullTrace, RequestTrace, Tracer
from aistack.testing.openai_server import hash_embedding, serve_in_thread


def base_config(upstream_url: str, **overrides: Any) -> dict[str, Any]:
    """A minimal gateway config (wire form) pointing at the fake upstream; deep-merges overrides."""
    cfg: dict[str, Any] = {
        "name": "demo", "namespace": "default", "stage": "dev", "configHash": "0123456789abcdef",
        "model": {"publicName": "demo-model", "primary": {"baseUrl": upstream_url, "model": "test-model",
                                                          "timeoutSeconds": 5}},
        "orchestration": {"mode": "pipeline", "maxSteps": 4, "timeouts": {}},
    }
    return _merge(cfg, overrides)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class Gateway:
    app: Any
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, api_key: str = "none", **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0,
                             timeout=kw.pop("timeout", 20), **kw)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics").text


@contextlib.contextmanager
def run_gateway(config: dict[str, Any] | GatewayConfig | None = None, **kwargs: Any) -> Iterator[Gateway]:
    if isinstance(config, dict):
        config = GatewayConfig.model_validate(config)
    app = create_app(config, **kwargs)
    with serve_in_thread(app) as port:
        yield Gateway(app=app, port=port)


@dataclass
class ListRetriever:
    """A Retriever over a fixed list; records every call."""

    passages: list[Passage]
    calls: list[tuple[str, str | None, int | None]] = field(default_factory=list)
    delay_s: float = 0.0
    fail: bool = False

    async def search(self, query: str, *, tenant: str | None, top_k: int | None = None) -> list[Passage]:
        self.calls.append((query, tenant, top_k))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("vector store down")
        return self.passages[: top_k or len(self.passages)]

    async def ready(self) -> bool:
        return not self.fail


@dataclass
class HashEmbedder:
    model: str = "hash-embed"
    dimension: int = 8

    @property
    def token_meter(self) -> EstimatedMeter:
        return EstimatedMeter(limit=510)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [hash_embedding(t, self.dimension) for t in texts]


class RecordingTracer(Tracer):
    """Every request traced, kept in memory instead of exported (set it on the gateway's state:
    `gw.app.state["holder"].current.tracer = RecordingTracer()`)."""

    def __init__(self) -> None:
        super().__init__(config=None, tags={}, metrics=GatewayMetrics())
        self.traces: list[RequestTrace] = []

    def start(self, *, name: str, inputs: Any) -> RequestTrace:
        return RequestTrace(name=name, inputs=inputs, tags={})

    def submit(self, trace: RequestTrace | NullTrace) -> None:
        if isinstance(trace, RequestTrace):
            self.traces.append(trace)
