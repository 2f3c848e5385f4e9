"""The SSE side of `/v1/chat/completions`: relaying the upstream stream through the output rails.

The response starts once the first upstream event is in hand (errors before it are JSON errors)
or, when that takes longer than the keep-alive interval, at that interval; after that a failure
ends the stream with an OpenAI error event, never a hung connection. Whenever nothing was sent
for the interval (the request still held before its first event, the answer held back for
`self_check_output`, a silent upstream), the client gets a `: keep-alive` comment, which SSE
clients ignore and proxies count as traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable
from typing import Any, Literal

from fastapi.responses import Response, StreamingResponse

from aistack.runtime.gateway.errors import GatewayError
from aistack.runtime.gateway.jsonio import sse
from aistack.runtime.gateway.turn import (DONE, RAIL_FAILED_OPEN, SSE_HEADERS, Turn, answered_by,
                                          finish_trace, question_of, rails_down)
from aistack.runtime.gateway.upstream import UpstreamError, UpstreamStream
from aistack.runtime.guardrails.guard import GuardrailsUnavailable
from aistack.runtime.guardrails.stream import StreamGuard

log = logging.getLogger("aistack.gateway")
KEEPALIVE = b": keep-alive\n\n"
KEEPALIVE_S = 15.0
"""The default interval: well under the 60 s idle timeout of nginx and cloud load balancers."""


async def with_keepalive(answer: Awaitable[Response], *, interval_s: float) -> Response:
    """The streamed answer `answer` will be, with keep-alives while it is held and while it flows.

    Ready within `interval_s` (the usual case), it is returned as it is, errors included (JSON
    errors). Later, the SSE response starts now with keep-alives, and the answer, or its error as
    an error event, follows when ready.
    """
    task = asyncio.ensure_future(answer)
    try:
        await asyncio.wait({task}, timeout=interval_s)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task.done():
        response = task.result()
        if isinstance(response, StreamingResponse):
            response.body_iterator = keepalive(response.body_iterator, interval_s=interval_s)
        return response
    return StreamingResponse(keepalive(_when_ready(task), interval_s=interval_s),
                             media_type="text/event-stream", headers=SSE_HEADERS)


async def _when_ready(task: asyncio.Future[Response]) -> AsyncIterator[bytes]:
    yield KEEPALIVE  # the response starts now: show the proxy some traffic at once
    try:
        response = await task
    except GatewayError as err:
        yield sse(err.body())
        return
    except Exception:
        log.exception("unexpected error on a held stream")
        yield sse(GatewayError(500, "internal error in the gateway; it was logged, retry later",
                               code="internal_error").body())
        return
    if isinstance(response, StreamingResponse):
        body = response.body_iterator
        try:
            async for part in body:
                yield part if isinstance(part, bytes) else str(part).encode()
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
    else:  # an error answered as a response: its body is the OpenAI error
        yield b"data: " + bytes(response.body) + b"\n\n"


async def keepalive(body: AsyncIterable[Any], *, interval_s: float) -> AsyncIterator[bytes]:
    """`body` as it comes, plus `: keep-alive` whenever it sent nothing for `interval_s`.

    One task reads `body` into a queue of one; a timer adds the comment when the queue stayed
    empty for the interval. No task or timer per event: a stream has thousands.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
    end = object()
    last = loop.time()
    timer: asyncio.TimerHandle | None = None

    async def pump() -> None:
        try:
            async for part in body:
                await queue.put(part)
        except Exception as err:  # handed to the reader, which raises it
            await queue.put(err)
            return
        await queue.put(end)

    def tick() -> None:
        nonlocal timer
        idle = loop.time() - last
        if idle >= interval_s and queue.empty():
            queue.put_nowait(KEEPALIVE)
            idle = 0.0
        timer = loop.call_later(max(interval_s - idle, 0.001), tick)

    reader = asyncio.ensure_future(pump())
    timer = loop.call_later(interval_s, tick)
    try:
        while True:
            part = await queue.get()
            if part is end:
                return
            if isinstance(part, BaseException):
                raise part
            last = loop.time()
            yield part if isinstance(part, bytes) else str(part).encode()
    finally:
        if timer is not None:
            timer.cancel()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader  # the body's own cleanup runs in it
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()

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
    """Open the model's stream (chat chunks, or a text completion's when `payload` has a `prompt`)
    and relay it through the output rails."""
    wants_usage = bool((turn.req.stream_options or {}).get("include_usage"))
    # the gateway always wants the usage (metrics, trace); the client's other options go along
    payload = {**payload, "stream_options": {**(turn.req.stream_options or {}), "include_usage": True}}
    started = time.perf_counter()
    size = {"messages": len(payload["messages"])} if "messages" in payload else {"prompt": 1}
    span_cm = turn.trace.span("generation", "LLM", inputs=size)
    span = span_cm.__enter__()
    try:
        upstream = await turn.model.stream(payload, deadline=turn.deadline)
    except BaseException as err:
        span_cm.__exit__(type(err), err, err.__traceback__)
        raise
    turn.step("first_byte", time.perf_counter() - started)
    span.attributes["upstream"] = upstream.target.role
    answered_by(turn, upstream.target)
    kind: Kind = "chat" if "messages" in payload else "text"
    return StreamingResponse(relay(turn, upstream, wants_usage, span, span_cm, started, kind=kind),
                             media_type="text/event-stream", headers=turn.headers(SSE_HEADERS))


Kind = Literal["chat", "text"]
"""What a stream's chunks are: chat completion chunks (`delta.content`) or text completions (`text`)."""


def _text(choice: dict[str, Any], kind: Kind) -> str | None:
    if kind == "text":
        return choice.get("text")
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        delta = choice["delta"] = {}
    return delta.get("content")


def _set_text(choice: dict[str, Any], kind: Kind, text: str) -> None:
    if kind == "text":
        choice["text"] = text
    else:
        choice["delta"]["content"] = text


def _worth_sending(choice: dict[str, Any], kind: Kind) -> bool:
    """A choice that still says something once the rails held its text back."""
    if choice.get("finish_reason"):
        return True
    if kind == "text":
        return bool(choice.get("text") or choice.get("logprobs"))
    delta = choice["delta"]
    return bool(delta.get("content") or set(delta) - {"content"})


def _choice(kind: Kind, index: int, text: str, finish_reason: str) -> dict[str, Any]:
    if kind == "text":
        return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}
    return {"index": index, "delta": {"content": text}, "finish_reason": finish_reason}


async def relay(turn: Turn, upstream: UpstreamStream, wants_usage: bool, span: Any, span_cm: Any,
                started: float, *, kind: Kind = "chat") -> AsyncIterator[bytes]:
    """Pass the upstream stream through, event by event, with the output rails in between: one
    `StreamGuard` per choice (`n` > 1 streams its answers interleaved, each judged on its own)."""
    state = turn.state
    emit = turn.emit or sse
    public = turn.req.model  # the base's public name or an adapter's, as checked
    guard = state.guard
    rails_on = guard is not None and bool(guard.fast_output or guard.llm_output)
    guards: dict[int, StreamGuard] = {}
    answers: dict[int, list[str]] = {}
    finished: set[int] = set()
    usage = None
    error: str | None = None
    first = True
    meta: dict[str, Any] = {}
    try:
        async for chunk in upstream:
            chunk["model"] = public
            meta = {"id": chunk.get("id"), "object": "chat.completion.chunk" if kind == "chat" else
                    "text_completion", "created": chunk.get("created"), "model": public}
            if first:
                first = False
                if turn.citations is not None:
                    chunk["citations"] = turn.citations
            choices = chunk.get("choices") or []
            if chunk.get("usage"):
                usage = chunk["usage"]
            if not choices:
                if wants_usage and (data := emit(chunk)):
                    yield data
                continue
            if not wants_usage:
                chunk.pop("usage", None)
            for choice in choices:
                content = _text(choice, kind)
                if content:
                    answers.setdefault(choice.get("index", 0), []).append(content)
            if not rails_on:
                if data := emit(chunk):  # a Responses writer has nothing to write for some chunks
                    yield data
                continue
            assert guard is not None
            kept = []
            for choice in choices:
                index = choice.get("index", 0)
                sguard = guards.get(index) or guards.setdefault(index, StreamGuard(guard))
                content = _text(choice, kind)
                if content:
                    _set_text(choice, kind, sguard.feed(content))
                    if sguard.decision.blocked:
                        yield filtered(turn, meta, sguard, index=index, kind=kind)
                        return
                if choice.get("finish_reason"):
                    finished.add(index)
                    tail = await stream_tail(turn, sguard)
                    if sguard.decision.blocked:
                        yield filtered(turn, meta, sguard, index=index, kind=kind)
                        return
                    _set_text(choice, kind, (_text(choice, kind) or "") + tail)
                if _worth_sending(choice, kind):
                    kept.append(choice)
            if kept or "citations" in chunk:
                chunk["choices"] = kept
                if data := emit(chunk):
                    yield data
        for index, sguard in sorted(guards.items()):
            if index in finished:
                continue  # the upstream ended this answer without a finish_reason
            tail = await stream_tail(turn, sguard)
            if sguard.decision.blocked:
                yield filtered(turn, meta, sguard, index=index, kind=kind)
                return
            yield emit({**meta, "choices": [_choice(kind, index, tail, "stop")]})
        yield turn.done()
    except UpstreamError as err:
        error = err.message
        yield emit(err.body())
    except GuardrailsUnavailable:
        error = "guardrails unavailable"
        yield emit(rails_down().body())
    finally:
        await upstream.aclose()
        turn.step("generation", time.perf_counter() - started)
        span.attributes["usage"] = usage
        span.outputs = {"chars": sum(len(a) for parts in answers.values() for a in parts)}
        span_cm.__exit__(None, None, None)
        answer = "\n\n".join("".join(parts) for _, parts in sorted(answers.items()))
        finish_trace(turn, answer=answer[:4000], error=error, usage=usage)


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
            turn.notice(RAIL_FAILED_OPEN.format(side="output"))  # the headers are sent: log and trace
        if decision.blocked:
            sguard.decision = decision
            sguard.sent = already_sent
            return ""
    return tail


def filtered(turn: Turn, meta: dict[str, Any], sguard: StreamGuard, *, index: int = 0,
             kind: Kind = "chat") -> bytes:
    turn.blocked("output", sguard.decision)
    refusal = turn.state.guard.refusal if turn.state.guard else ""
    text = ("\n\n" + refusal) if sguard.sent else refusal
    chunk = {**meta, "choices": [_choice(kind, index, text, "content_filter")],
             "aistack": {"blocked_by": sguard.decision.rail, "side": "output"}}
    return (turn.emit or sse)(chunk) + turn.done()
