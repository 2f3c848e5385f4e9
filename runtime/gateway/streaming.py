"""The SSE side of `/v1/chat/completions`: relaying the upstream stream through the output rails.

The response starts only once the first upstream event is in hand (errors before it are JSON
errors); after that a failure ends the stream with an OpenAI error event, never a hung
connection.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import Response, StreamingResponse

from aistack.runtime.gateway.jsonio import sse
from aistack.runtime.gateway.turn import DONE, SSE_HEADERS, Turn, finish_trace, question_of, rails_down
from aistack.runtime.gateway.upstream import UpstreamError, UpstreamStream
from aistack.runtime.guardrails.guard import GuardrailsUnavailable
from aistack.runtime.guardrails.stream import StreamGuard

async def refusal_stream(turn: Turn, completion: dict[str, Any]) -> AsyncIterator[bytes]:
    base = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
            "model": completion["model"]}
    content = completion["choices"][0]["message"]["content"]
    yield sse({**base,
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": content},
                            "finish_reason": None}]})
    yield sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}],
               "aistack": completion["aistack"]})
    yield DONE


async def completion_as_stream(response: dict[str, Any]) -> AsyncIterator[bytes]:
    base = {"id": response.get("id"), "object": "chat.completion.chunk", "created": response.get("created"),
            "model": response.get("model")}
    choice = response["choices"][0]
    extra = {k: response[k] for k in ("citations", "aistack") if k in response}
    yield sse({**base, **extra, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                   "content": choice[
                                                                       "message"].get("content") or ""},
                                             "finish_reason": None}]})
    yield sse({**base,
               "choices": [{"index": 0, "delta": {},
                            "finish_reason": choice.get("finish_reason") or "stop"}]})
    yield DONE


async def start_stream(turn: Turn, payload: dict[str, Any]) -> Response:
    wants_usage = bool((turn.req.stream_options or {}).get("include_usage"))
    payload = {**payload, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    span_cm = turn.trace.span("generation", "LLM", inputs={"messages": len(payload["messages"])})
    span = span_cm.__enter__()
    try:
        upstream = await turn.state.model.stream(payload, deadline=turn.deadline)
    except BaseException as err:
        span_cm.__exit__(type(err), err, err.__traceback__)
        raise
    turn.step("first_byte", time.perf_counter() - started)
    span.attributes["upstream"] = upstream.target.role
    return StreamingResponse(relay(turn, upstream, wants_usage, span, span_cm, started),
                             media_type="text/event-stream", headers=SSE_HEADERS)


async def relay(turn: Turn, upstream: UpstreamStream, wants_usage: bool, span: Any, span_cm: Any,
                 started: float) -> AsyncIterator[bytes]:
    """Pass the upstream stream through, event by event, with the output rails in between."""
    state = turn.state
    public = state.config.model.public_name
    guard = state.guard
    sguard = StreamGuard(guard) if guard is not None and (guard.fast_output or guard.llm_output) else None
    answer: list[str] = []
    usage = None
    error: str | None = None
    first = True
    finished = False
    meta: dict[str, Any] = {}
    try:
        async for chunk in upstream:
            chunk["model"] = public
            meta = {"id": chunk.get("id"), "object": "chat.completion.chunk", "created": chunk.get("created"),
                    "model": public}
            if first:
                first = False
                if turn.citations is not None:
                    chunk["citations"] = turn.citations
            choices = chunk.get("choices") or []
            if chunk.get("usage"):
                usage = chunk["usage"]
            if not choices:
                if wants_usage:
                    yield sse(chunk)
                continue
            if not wants_usage:
                chunk.pop("usage", None)
            choice = choices[0]
            if not isinstance(choice.get("delta"), dict):
                choice["delta"] = {}
            delta = choice["delta"]
            content = delta.get("content")
            if content:
                answer.append(content)
            if sguard is None:
                yield sse(chunk)
                continue
            if content:
                delta["content"] = sguard.feed(content)
                if sguard.decision.blocked:
                    yield filtered(turn, meta, sguard)
                    return
            if choice.get("finish_reason"):
                finished = True
                tail = await stream_tail(turn, sguard)
                if sguard.decision.blocked:
                    yield filtered(turn, meta, sguard)
                    return
                delta["content"] = (delta.get("content") or "") + tail
            if delta.get(
                    "content") or set(
                        delta) - {"content"} or choice.get("finish_reason") or "citations" in chunk:
                yield sse(chunk)
        if sguard is not None and not finished:  # the upstream ended without a finish_reason
            tail = await stream_tail(turn, sguard)
            if sguard.decision.blocked:
                yield filtered(turn, meta, sguard)
                return
            yield sse({**meta,
                       "choices": [{"index": 0, "delta": {"content": tail}, "finish_reason": "stop"}]})
        yield DONE
    except UpstreamError as err:
        error = err.message
        yield sse(err.body())
    except GuardrailsUnavailable:
        error = "guardrails unavailable"
        yield sse(rails_down().body())
    finally:
        await upstream.aclose()
        turn.step("generation", time.perf_counter() - started)
        span.attributes["usage"] = usage
        span.outputs = {"chars": sum(len(a) for a in answer)}
        span_cm.__exit__(None, None, None)
        finish_trace(turn, answer="".join(answer)[:4000], error=error, usage=usage)


async def stream_tail(turn: Turn, sguard: StreamGuard) -> str:
    """The held-back rest of the answer, after the fast rails (and the LLM rail) judged it whole."""
    already_sent = sguard.sent
    tail = sguard.flush()
    guard = turn.state.guard
    if sguard.decision.blocked or guard is None:
        return ""
    if sguard.hold_all:
        decision, failed = await guard.check_llm(side="output", question=question_of(turn), answer=tail)
        if failed:
            turn.metrics.rail_errors.labels("output").inc()
        if decision.blocked:
            sguard.decision = decision
            sguard.sent = already_sent
            return ""
    return tail


def filtered(turn: Turn, meta: dict[str, Any], sguard: StreamGuard) -> bytes:
    turn.blocked("output", sguard.decision)
    refusal = turn.state.guard.refusal if turn.state.guard else ""
    text = ("\n\n" + refusal) if sguard.sent else refusal
    return sse({**meta,
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "content_filter"}],
                "aistack": {"blocked_by": sguard.decision.rail, "side": "output"}}) + DONE
