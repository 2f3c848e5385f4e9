"""`POST /v1/chat/completions`: rails -> (retrieval || LLM input rail) -> prompt -> model ->
output rails -> answer, each step timed and traced.

Upstream failures before the first byte become JSON errors with a fitting status; the SSE
response starts only once the first upstream event is in hand. After that, a failure ends the
stream with an OpenAI error event (the SDK raises it), never a hung connection.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse, Response, StreamingResponse

from aistack.runtime.contracts import Passage, Retriever
from aistack.runtime.gateway.auth import Caller
from aistack.runtime.gateway.errors import GatewayError
from aistack.runtime.gateway.metrics import GatewayMetrics
from aistack.runtime.gateway.schemas import ChatRequest
from aistack.runtime.gateway.state import GatewayState
from aistack.runtime.gateway.upstream import UpstreamError, UpstreamStream
from aistack.runtime.guardrails.fast import RailDecision
from aistack.runtime.guardrails.guard import GuardrailsUnavailable, StreamGuard
from aistack.runtime.orchestration.agent import AgentBudgetExceeded, run_agent
from aistack.runtime.orchestration.pipeline import build_prompt
from aistack.runtime.tracing import NullTrace, RequestTrace

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sse(obj: Any) -> bytes:
    return f"data: {_dumps(obj)}\n\n".encode()


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

    def step(self, name: str, seconds: float) -> None:
        self.metrics.steps.labels(name).observe(seconds)

    def blocked(self, side: str, decision: RailDecision) -> None:
        self.metrics.rail_blocks.labels(side, decision.rail or "unknown").inc()


def _check_messages(req: ChatRequest) -> None:
    for i, m in enumerate(req.messages):
        if m.role == "tool" and not m.tool_call_id:
            raise GatewayError(400, f"messages[{i}]: a 'tool' message needs tool_call_id", param=f"messages.{i}")
        if m.role == "user" and m.content is None:
            raise GatewayError(400, f"messages[{i}]: a 'user' message needs content", param=f"messages.{i}.content")
    if not any(m.role == "user" for m in req.messages):
        raise GatewayError(400, "messages must contain at least one 'user' message", param="messages")


def _refusal_completion(turn: Turn, *, side: str, rail: str | None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
        "model": turn.state.config.model.public_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": turn.state.guard.refusal if turn.state.guard else ""},
                     "finish_reason": "content_filter"}],
        "aistack": {"blocked_by": rail, "side": side},
    }
    if usage:
        out["usage"] = usage
    if turn.citations is not None:
        out["citations"] = []
    return out


async def _refusal_stream(turn: Turn, completion: dict[str, Any]) -> AsyncIterator[bytes]:
    base = {"id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
            "model": completion["model"]}
    content = completion["choices"][0]["message"]["content"]
    yield sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": None}]})
    yield sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}],
               "aistack": completion["aistack"]})
    yield DONE


async def _retrieve(turn: Turn, retriever: Retriever, question: str) -> list[Passage]:
    cfg = turn.state.config
    assert cfg.retrieval is not None
    with turn.trace.span("retrieval", "RETRIEVER", inputs={"query": question}) as span:
        started = time.perf_counter()
        try:
            passages = await asyncio.wait_for(
                retriever.search(question, tenant=turn.tenant, top_k=cfg.retrieval.top_k),
                timeout=cfg.orchestration.timeouts.retrieval_seconds)
        except TimeoutError:
            raise GatewayError(504, f"retrieval did not answer within {cfg.orchestration.timeouts.retrieval_seconds}s; "
                                    "retry later", code="retrieval_timeout") from None
        except GatewayError:
            raise
        except Exception as err:
            raise GatewayError(503, f"retrieval failed ({type(err).__name__}); retry later",
                               code="retrieval_unavailable") from err
        turn.step("retrieval", time.perf_counter() - started)
        span.outputs = [{"source": p.source, "score": p.score} for p in passages]
        return passages


async def _input_stage(turn: Turn, retriever: Retriever | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(prompt messages, refusal completion or None): fast rails, then LLM rail || retrieval."""
    state = turn.state
    cfg = state.config
    messages = [m.model_dump(exclude_none=True) for m in turn.req.messages]
    q_index = max(i for i, m in enumerate(turn.req.messages) if m.role == "user")
    question = turn.req.messages[q_index].text()
    guard = state.guard
    if guard is not None and guard.fast_input:
        started = time.perf_counter()
        with turn.trace.span("rails.input.fast", "GUARDRAIL", inputs={"rails": guard.fast_input.rails}) as span:
            decision = guard.fast_input.check(question)
            span.outputs = {"status": decision.status, "rail": decision.rail}
        turn.step("rails_input_fast", time.perf_counter() - started)
        if decision.blocked:
            turn.blocked("input", decision)
            return [], _refusal_completion(turn, side="input", rail=decision.rail)
        if decision.status == "modified":
            question = decision.text
            messages[q_index] = {**messages[q_index], "content": question}
    retrieval = None
    if cfg.retrieval is not None:
        if retriever is None:
            raise GatewayError(503, "this stack declares retrieval but the gateway has no retriever wired; "
                                    "check the gateway logs", code="retrieval_unavailable")
        retrieval = asyncio.create_task(_retrieve(turn, retriever, question))
    try:
        if guard is not None and guard.llm_input:
            started = time.perf_counter()
            with turn.trace.span("rails.input.llm", "GUARDRAIL", inputs={"rail": "self_check_input"}) as span:
                decision, failed = await guard.check_llm(side="input", question=question)
                span.outputs = {"status": decision.status, "rail": decision.rail, "engine_failed": failed}
            turn.step("rails_input_llm", time.perf_counter() - started)
            if failed:
                turn.metrics.rail_errors.labels("input").inc()
            if decision.blocked:
                turn.blocked("input", decision)
                return [], _refusal_completion(turn, side="input", rail=decision.rail)
        passages = await retrieval if retrieval is not None else None
    finally:
        if retrieval is not None and not retrieval.done():
            retrieval.cancel()
    with turn.trace.span("prompt", "PARSER") as span:
        prompt = build_prompt(messages=messages, question=question, passages=passages,
                              system_prompt=cfg.orchestration.system_prompt, template=cfg.orchestration.prompt_template,
                              max_context_tokens=cfg.retrieval.max_context_tokens if cfg.retrieval else 3000)
        span.outputs = {"messages": len(prompt.messages), "citations": len(prompt.citations)}
    if cfg.retrieval is not None:
        turn.citations = prompt.citations
    return prompt.messages, None


def _payload(turn: Turn, messages: list[dict[str, Any]]) -> dict[str, Any]:
    d = turn.state.config.model.defaults
    payload: dict[str, Any] = {}
    if d.temperature is not None:
        payload["temperature"] = d.temperature
    if d.top_p is not None:
        payload["top_p"] = d.top_p
    if d.max_tokens is not None and turn.req.max_completion_tokens is None:
        payload["max_tokens"] = d.max_tokens
    payload.update(turn.req.sampling())
    payload["messages"] = messages
    return payload


async def _generate(turn: Turn, payload: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed answer: one model call (pipeline) or the agent loop."""
    state = turn.state
    cfg = state.config
    if cfg.orchestration.mode == "agent" and state.toolbox is not None:
        async def complete(body: dict[str, Any]) -> dict[str, Any]:
            with turn.trace.span("generation", "LLM", inputs={"messages": len(body["messages"])}) as span:
                started = time.perf_counter()
                response, target = await state.model.complete(body)
                turn.step("generation", time.perf_counter() - started)
                span.attributes.update({"upstream": target.role, "usage": response.get("usage")})
                return response

        def on_tool(name: str, arguments: str, outcome: str, text: str, seconds: float) -> None:
            turn.metrics.tool_calls.labels(name, outcome).inc()
            turn.step("tool", seconds)
            with turn.trace.span(f"tool.{name}", "TOOL", inputs={"arguments": arguments}) as span:
                span.outputs = {"outcome": outcome, "result": text[:500]}
                span.attributes["seconds"] = seconds

        budget = cfg.orchestration.timeouts.request_seconds
        try:
            result = await run_agent(complete=complete, payload=payload, toolbox=state.toolbox,
                                     max_steps=cfg.orchestration.max_steps, deadline=time.monotonic() + budget,
                                     on_tool_call=on_tool)
        except AgentBudgetExceeded as err:
            raise GatewayError(504, f"the agent ran out of its {budget}s budget {err}", code="agent_timeout") from None
        response = result.response
        message = response["choices"][0]["message"]
        if not message.get("content"):
            message["content"] = f"(the agent stopped after {result.steps} steps without a final answer)"
            message.pop("tool_calls", None)
            response["choices"][0]["finish_reason"] = "length"
        response["aistack"] = {"steps": result.steps, "tool_calls": result.tool_calls}
        return response
    with turn.trace.span("generation", "LLM", inputs={"messages": len(payload["messages"])}) as span:
        started = time.perf_counter()
        response, target = await state.model.complete(payload)
        turn.step("generation", time.perf_counter() - started)
        span.attributes.update({"upstream": target.role, "usage": response.get("usage")})
    return response


async def _output_rails(turn: Turn, question: str, answer: str) -> RailDecision:
    guard = turn.state.guard
    decision = RailDecision("passed", answer, None)
    if guard is None:
        return decision
    started = time.perf_counter()
    if guard.fast_output:
        with turn.trace.span("rails.output.fast", "GUARDRAIL") as span:
            decision = guard.fast_output.check(answer)
            span.outputs = {"status": decision.status, "rail": decision.rail}
    if not decision.blocked and guard.llm_output:
        with turn.trace.span("rails.output.llm", "GUARDRAIL", inputs={"rail": "self_check_output"}) as span:
            llm_decision, failed = await guard.check_llm(side="output", question=question, answer=decision.text)
            span.outputs = {"status": llm_decision.status, "rail": llm_decision.rail, "engine_failed": failed}
        if failed:
            turn.metrics.rail_errors.labels("output").inc()
        if llm_decision.blocked:
            decision = llm_decision
    turn.step("rails_output", time.perf_counter() - started)
    if decision.blocked:
        turn.blocked("output", decision)
    return decision


def _question(turn: Turn) -> str:
    return [m for m in turn.req.messages if m.role == "user"][-1].text()


def _finish_trace(turn: Turn, *, answer: str | None, error: str | None, usage: Any = None) -> None:
    turn.trace.finish(outputs={"answer": answer}, error=error, usage=usage)
    turn.state.tracer.submit(turn.trace)


async def handle_chat(*, state: GatewayState, metrics: GatewayMetrics, req: ChatRequest, caller: Caller,
                      tenant: str | None, retriever: Retriever | None) -> Response:
    cfg = state.config
    if req.model != cfg.model.public_name:
        raise GatewayError(404, f"The model `{req.model}` does not exist; this gateway serves "
                                f"`{cfg.model.public_name}` (see GET /v1/models)", code="model_not_found", param="model")
    _check_messages(req)
    if cfg.orchestration.mode == "agent" and (req.tools or req.tool_choice):
        raise GatewayError(400, "this stack is an agent with its own tools; 'tools' and 'tool_choice' are not "
                                "accepted from clients", param="tools", code="unsupported_parameter")
    trace = state.tracer.start(name="chat.completions", inputs={"question": _question_text(req), "stream": req.stream})
    turn = Turn(state=state, metrics=metrics, req=req, caller=caller, tenant=tenant, trace=trace)
    try:
        async with asyncio.timeout(cfg.orchestration.timeouts.request_seconds):
            messages, refusal = await _input_stage(turn, retriever)
            if refusal is not None:
                _finish_trace(turn, answer=refusal["choices"][0]["message"]["content"], error=None)
                if req.stream:
                    return StreamingResponse(_refusal_stream(turn, refusal), media_type="text/event-stream",
                                             headers=SSE_HEADERS)
                return JSONResponse(refusal)
            payload = _payload(turn, messages)
            if req.stream and not (cfg.orchestration.mode == "agent" and state.toolbox is not None):
                return await _start_stream(turn, payload)
            response = await _generate(turn, payload)
    except TimeoutError:
        _finish_trace(turn, answer=None, error="request budget exceeded")
        raise GatewayError(504, f"the request exceeded its {cfg.orchestration.timeouts.request_seconds}s budget",
                           code="request_timeout") from None
    except GuardrailsUnavailable:
        _finish_trace(turn, answer=None, error="guardrails unavailable")
        raise _rails_down() from None
    except GatewayError as err:
        _finish_trace(turn, answer=None, error=err.message)
        raise
    response["model"] = cfg.model.public_name
    choice = response["choices"][0]
    answer = choice["message"].get("content") or ""
    try:
        decision = await _output_rails(turn, _question(turn), answer)
    except GuardrailsUnavailable:
        _finish_trace(turn, answer=None, error="guardrails unavailable")
        raise _rails_down() from None
    if decision.blocked:
        response = _refusal_completion(turn, side="output", rail=decision.rail, usage=response.get("usage"))
    elif decision.status == "modified":
        choice["message"]["content"] = decision.text
    if turn.citations is not None and not decision.blocked:
        response["citations"] = turn.citations
    _finish_trace(turn, answer=response["choices"][0]["message"].get("content"), error=None, usage=response.get("usage"))
    if req.stream:  # an agent's answer, sent as a stream
        return StreamingResponse(_completion_as_stream(response), media_type="text/event-stream", headers=SSE_HEADERS)
    return JSONResponse(response)


def _rails_down() -> GatewayError:
    return GatewayError(503, "the guardrails engine is unavailable, so the request was not served; retry later",
                        code="guardrails_unavailable")


def _question_text(req: ChatRequest) -> str:
    users = [m for m in req.messages if m.role == "user"]
    return users[-1].text()[:4000] if users else ""


async def _completion_as_stream(response: dict[str, Any]) -> AsyncIterator[bytes]:
    base = {"id": response.get("id"), "object": "chat.completion.chunk", "created": response.get("created"),
            "model": response.get("model")}
    choice = response["choices"][0]
    extra = {k: response[k] for k in ("citations", "aistack") if k in response}
    yield sse({**base, **extra, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                   "content": choice["message"].get("content") or ""},
                                             "finish_reason": None}]})
    yield sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason") or "stop"}]})
    yield DONE


async def _start_stream(turn: Turn, payload: dict[str, Any]) -> Response:
    wants_usage = bool((turn.req.stream_options or {}).get("include_usage"))
    payload = {**payload, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    span_cm = turn.trace.span("generation", "LLM", inputs={"messages": len(payload["messages"])})
    span = span_cm.__enter__()
    try:
        upstream = await turn.state.model.stream(payload)
    except BaseException as err:
        span_cm.__exit__(type(err), err, err.__traceback__)
        raise
    turn.step("first_byte", time.perf_counter() - started)
    span.attributes["upstream"] = upstream.target.role
    return StreamingResponse(_relay(turn, upstream, wants_usage, span, span_cm, started),
                             media_type="text/event-stream", headers=SSE_HEADERS)


async def _relay(turn: Turn, upstream: UpstreamStream, wants_usage: bool, span: Any, span_cm: Any,
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
            meta = {"id": chunk.get("id"), "object": "chat.completion.chunk", "created": chunk.get("created"), "model": public}
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
                    yield _filtered(turn, meta, sguard)
                    return
            if choice.get("finish_reason"):
                finished = True
                tail = await _stream_tail(turn, sguard)
                if sguard.decision.blocked:
                    yield _filtered(turn, meta, sguard)
                    return
                delta["content"] = (delta.get("content") or "") + tail
            if delta.get("content") or set(delta) - {"content"} or choice.get("finish_reason") or "citations" in chunk:
                yield sse(chunk)
        if sguard is not None and not finished:  # the upstream ended without a finish_reason
            tail = await _stream_tail(turn, sguard)
            if sguard.decision.blocked:
                yield _filtered(turn, meta, sguard)
                return
            yield sse({**meta, "choices": [{"index": 0, "delta": {"content": tail}, "finish_reason": "stop"}]})
        yield DONE
    except UpstreamError as err:
        error = err.message
        yield sse(err.body())
    except GuardrailsUnavailable:
        error = "guardrails unavailable"
        yield sse(_rails_down().body())
    finally:
        await upstream.aclose()
        turn.step("generation", time.perf_counter() - started)
        span.attributes["usage"] = usage
        span.outputs = {"chars": sum(len(a) for a in answer)}
        span_cm.__exit__(None, None, None)
        _finish_trace(turn, answer="".join(answer)[:4000], error=error, usage=usage)


async def _stream_tail(turn: Turn, sguard: StreamGuard) -> str:
    """The held-back rest of the answer, after the fast rails (and the LLM rail) judged it whole."""
    already_sent = sguard.sent
    tail = sguard.flush()
    guard = turn.state.guard
    if sguard.decision.blocked or guard is None:
        return ""
    if sguard.hold_all:
        decision, failed = await guard.check_llm(side="output", question=_question(turn), answer=tail)
        if failed:
            turn.metrics.rail_errors.labels("output").inc()
        if decision.blocked:
            sguard.decision = decision
            sguard.sent = already_sent
            return ""
    return tail


def _filtered(turn: Turn, meta: dict[str, Any], sguard: StreamGuard) -> bytes:
    turn.blocked("output", sguard.decision)
    refusal = turn.state.guard.refusal if turn.state.guard else ""
    text = ("\n\n" + refusal) if sguard.sent else refusal
    return sse({**meta, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "content_filter"}],
                "aistack": {"blocked_by": sguard.decision.rail, "side": "output"}}) + DONE
