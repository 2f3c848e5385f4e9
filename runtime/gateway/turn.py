"""One chat request in flight, and the pieces of an answer shared by the JSON and SSE paths."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.gateway.auth import Caller
from aistack.runtime.gateway.errors import GatewayError
from aistack.runtime.gateway.schemas import ChatRequest
from aistack.runtime.gateway.state import GatewayState
from aistack.runtime.guardrails.fast import RailDecision, mask_pii
from aistack.runtime.retrieval.contracts import Embedder, Passage
from aistack.runtime.tracing import NullTrace, RequestTrace

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"


@dataclass
class Turn:
    """One request in flight, with everything the steps share."""

    state: GatewayState
    metrics: GatewayMetrics
    req: ChatRequest
    caller: Caller
    tenant: str | None
    trace: RequestTrace | NullTrace
    started: float = field(default_factory=time.perf_counter)
    citations: list[dict[str, Any]] | None = None
    passages: list[Passage] | None = None
    """What the citations cite (None without retrieval)."""
    embedder: Embedder | None = None
    """The stack's embedder, where the gateway has one (extractive answers rank sentences with it)."""
    question: str = ""
    """The last user message as the input rails let it through (masked): what every later step
    (retrieval, the LLM rails, the trace) sees instead of the client's text."""

    @property
    def deadline(self) -> float:
        """The end of the request's budget (`time.perf_counter()` seconds): retries must fit before it."""
        return self.started + self.state.config.orchestration.timeouts.request_seconds

    def step(self, name: str, seconds: float) -> None:
        self.metrics.observe_step(name, seconds)

    def blocked(self, side: str, decision: RailDecision) -> None:
        self.metrics.rail_blocks.labels(side, decision.rail or "unknown").inc()


def refusal_completion(turn: Turn, *, side: str, rail: str | None,
                       usage: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": turn.state.config.model.public_name,
        "choices": [{"index": 0,
                     "message": {"role": "assistant",
                                 "content": turn.state.guard.refusal if turn.state.guard else ""},
                     "finish_reason": "content_filter"}],
        "aistack": {"blocked_by": rail, "side": side},
    }
    if usage:
        out["usage"] = usage
    if turn.citations is not None:
        out["citations"] = []
    return out


def question_of(turn: Turn) -> str:
    return turn.question


def finish_trace(turn: Turn, *, answer: str | None, error: str | None, usage: Any = None) -> None:
    """End the trace with the answer as the client got it: masked where the output rails mask
    (a stream's answer is gathered before its rails run)."""
    if not turn.trace.enabled:
        return
    guard = turn.state.guard
    if answer and guard is not None and "pii_mask" in guard.fast_output.rails:
        answer = mask_pii(answer)
    turn.trace.finish(outputs={"answer": answer}, error=error, usage=usage)
    turn.state.tracer.submit(turn.trace)


def rails_down() -> GatewayError:
    return GatewayError(503, "the guardrails engine is unavailable, so the request was not served; "
                             "retry later", code="guardrails_unavailable")
