"""One chat request in flight, and the pieces of an answer shared by the JSON and SSE paths."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.gateway.auth import Caller
from aistack.runtime.gateway.errors import GatewayError
from aistack.runtime.gateway.state import GatewayState
from aistack.runtime.gateway.upstream import ModelClient, Target
from aistack.runtime.guardrails.fast import RailDecision, mask_pii
from aistack.runtime.guardrails.guard import GuardrailsUnavailable
from aistack.runtime.retrieval.contracts import Embedder, Passage
from aistack.runtime.tracing import NullTrace, RequestTrace

log = logging.getLogger("aistack.gateway")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"
NOTICE_HEADER = "x-aistack-notice"
"""Notices about an answer (the offline model answers, the fallback answered, a rail failed open,
an extractive quotation) go in this header, the log and the trace: never in the answer's text,
which a client may parse (JSON mode, tool arguments)."""


MODEL_VERSION_TAG = "aistack.model_version"
"""The trace tag naming the version of the model that answered (`stable` or `canary`), set where
the stack has a canary."""

R = TypeVar("R", bound=BaseModel)


@dataclass
class Turn(Generic[R]):
    """One request in flight, with everything the steps share; `req` is its validated body
    (a `ChatRequest` on the chat path and `/v1/responses`, a `CompletionRequest` on completions)."""

    state: GatewayState
    metrics: GatewayMetrics
    req: R
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
    notices: list[str] = field(default_factory=list)
    """What the client is told beside the answer (`NOTICE_HEADER`)."""
    emit: Callable[[dict[str, Any]], bytes] | None = None
    """How a streamed chat chunk (or `{"error": ...}`) is written for the client; None: as a chat SSE
    event. `/v1/responses` writes its own events from the chunks directly (no second parse)."""
    end: Callable[[], bytes] | None = None
    """What ends a stream written by `emit` (None: `data: [DONE]`)."""
    version: str = "stable"
    """The version of the model that answers (`canary` when the split sends the request there)."""

    def __post_init__(self) -> None:
        canary = self.state.canary
        if canary is None:
            return
        self.version = self.caller.pinned or canary.split.choose(self.caller.sticky)
        if self.trace.enabled:
            self.trace.tags[MODEL_VERSION_TAG] = self.version
        if canary.reporter is not None:
            canary.reporter.start()

    @property
    def model(self) -> ModelClient:
        """The client of the version that answers this request."""
        return self.state.client(self.version)

    def done(self) -> bytes:
        return self.end() if self.end is not None else DONE

    @property
    def deadline(self) -> float:
        """The end of the request's budget (`time.perf_counter()` seconds): retries must fit before it."""
        return self.started + self.state.config.orchestration.timeouts.request_seconds

    def step(self, name: str, seconds: float) -> None:
        self.metrics.observe_step(name, seconds)

    def blocked(self, side: str, decision: RailDecision) -> None:
        self.metrics.rail_blocks.labels(side, decision.rail or "unknown").inc()

    def notice(self, text: str) -> None:
        """Tell the client (header), the log and the trace something about this answer."""
        if text not in self.notices:
            self.notices.append(text)
            log.info("notice: %s", text)

    def headers(self, base: dict[str, str] | None = None) -> dict[str, str] | None:
        """`base` plus the notice header, when there is a notice (one line, ASCII, as HTTP wants)."""
        if not self.notices:
            return base
        value = " | ".join(self.notices).encode("ascii", "replace").decode().replace("\r", " ")
        return {**(base or {}), NOTICE_HEADER: value.replace("\n", " ")}


def refusal_completion(turn: Turn, *, side: str, rail: str | None,
                       usage: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": turn.req.model,
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
    if turn.notices:
        turn.trace.finish(outputs={"answer": answer}, error=error, usage=usage, notices=turn.notices)
    else:
        turn.trace.finish(outputs={"answer": answer}, error=error, usage=usage)
    turn.state.tracer.submit(turn.trace)


RAIL_FAILED_OPEN = "the guardrails engine failed, so the {side} passed without its LLM rail (failOpen)"


def answered_by(turn: Turn, target: Target) -> None:
    """A notice when the fallback model answered instead of the primary."""
    if target.role != "primary":
        turn.notice(f"answered by the {target.role} model ({target.upstream.model}): the primary failed")


def rails_down() -> GatewayError:
    return GatewayError(503, "the guardrails engine is unavailable, so the request was not served; "
                             "retry later", code="guardrails_unavailable")


@contextlib.asynccontextmanager
async def within_budget(turn: Turn) -> AsyncIterator[None]:
    """The request's work up to its answer, within the request budget; a failure ends the trace
    saying what went wrong and reaches the client as its OpenAI error: past the budget a 504, the
    guardrails engine down a 503, any other `GatewayError` as it is."""
    seconds = turn.state.config.orchestration.timeouts.request_seconds
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        finish_trace(turn, answer=None, error="request budget exceeded")
        raise GatewayError(504, f"the request exceeded its {seconds}s budget",
                           code="request_timeout") from None
    except GuardrailsUnavailable:
        finish_trace(turn, answer=None, error="guardrails unavailable")
        raise rails_down() from None
    except GatewayError as err:
        finish_trace(turn, answer=None, error=err.message)
        raise
