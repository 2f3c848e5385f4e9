"""`POST /v1/chat/completions`: rails -> (retrieval || LLM input rail) -> prompt -> model ->
output rails -> answer, each step timed and traced. The SSE path is in `streaming.py`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.responses import Response, StreamingResponse

from aistack.api.gateway_config import ModelConfig
from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.gateway.auth import Caller
from aistack.runtime.gateway.errors import GatewayError
from aistack.runtime.gateway.jsonio import json_response
from aistack.runtime.gateway.schemas import ChatRequest
from aistack.runtime.gateway.state import GatewayState
from aistack.runtime.gateway.streaming import completion_as_stream, refusal_stream, start_stream
from aistack.runtime.gateway.turn import (RAIL_FAILED_OPEN, SSE_HEADERS, Turn, answered_by, finish_trace,
                                          question_of, rails_down, refusal_completion, within_budget)
from aistack.runtime.guardrails.fast import RailDecision
from aistack.runtime.guardrails.guard import GuardrailsUnavailable
from aistack.runtime.orchestration import extractive
from aistack.runtime.orchestration.agent import AgentBudgetExceeded, run_agent
from aistack.runtime.orchestration.pipeline import build_prompt
from aistack.runtime.retrieval.contracts import Embedder, Passage, Retriever

MAX_MESSAGES = 2048
"""The longest conversation accepted, as the OpenAI API's own limit: every turn goes through the
rails, so a client must not be able to make that unbounded."""


def _check_messages(req: ChatRequest, *, templated: bool) -> None:
    """Refuse what the rails or the prompt would otherwise drop or misread. `templated`: the
    stack rewrites the last user message with its prompt template, so a part that is not text
    would be lost there."""
    if len(req.messages) > MAX_MESSAGES:
        raise GatewayError(400, f"messages holds {len(req.messages)} messages; at most {MAX_MESSAGES} are "
                                "accepted", param="messages", code="too_many_messages")
    last_user = max((i for i, m in enumerate(req.messages) if m.role == "user"), default=-1)
    for i, m in enumerate(req.messages):
        if m.role == "tool" and not m.tool_call_id:
            raise GatewayError(400, f"messages[{i}]: a 'tool' message needs tool_call_id",
                               param=f"messages.{i}")
        if m.role == "user" and m.content is None:
            raise GatewayError(400, f"messages[{i}]: a 'user' message needs content",
                               param=f"messages.{i}.content")
        if isinstance(m.content, list):
            _check_parts(m.content, index=i, templated=templated and i == last_user)
    if last_user < 0:
        raise GatewayError(400, "messages must contain at least one 'user' message", param="messages")


def _check_parts(parts: list[dict[str, Any]], *, index: int, templated: bool) -> None:
    for j, part in enumerate(parts):
        where = f"messages[{index}].content[{j}]"
        kind = part.get("type")
        if not isinstance(kind, str):
            raise GatewayError(400, f"{where}: a content part needs a 'type' (e.g. 'text')",
                               param=f"messages.{index}.content.{j}.type", code="invalid_type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise GatewayError(400, f"{where}: a 'text' part needs 'text' as a string",
                                   param=f"messages.{index}.content.{j}.text", code="invalid_type")
        elif templated:
            raise GatewayError(400, f"{where}: a {kind!r} part cannot be sent in the last user message: this "
                                    "stack rewrites that message with its prompt template (retrieval), which "
                                    "carries text only; send the question as text parts",
                               param=f"messages.{index}.content.{j}.type", code="unsupported_content")


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
            raise GatewayError(504, "retrieval did not answer within "
                               f"{cfg.orchestration.timeouts.retrieval_seconds}s; "
                                    "retry later", code="retrieval_timeout") from None
        except GatewayError:
            raise
        except Exception as err:
            raise GatewayError(503, f"retrieval failed ({type(err).__name__}); retry later",
                               code="retrieval_unavailable") from err
        turn.step("retrieval", time.perf_counter() - started)
        span.outputs = [{"source": p.source, "score": p.score} for p in passages]
        return passages


async def _input_stage(turn: Turn,
                       retriever: Retriever | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(prompt messages, refusal completion or None): fast rails over every turn the client sent,
    then LLM rail || retrieval. The trace records the question only as the rails let it through."""
    state = turn.state
    cfg = state.config
    messages = [m.model_dump(exclude_none=True) for m in turn.req.messages]
    q_index = max(i for i, m in enumerate(turn.req.messages) if m.role == "user")
    guard = state.guard
    if guard is not None and guard.fast_input:
        started = time.perf_counter()
        with turn.trace.span("rails.input.fast", "GUARDRAIL",
                             inputs={"rails": guard.fast_input.rails, "messages": len(messages)}) as span:
            places, turns = _texts(messages)
            decision, texts = guard.fast_input.check_conversation(turns)
            span.outputs = {"status": decision.status, "rail": decision.rail}
        turn.step("rails_input_fast", time.perf_counter() - started)
        if decision.blocked:
            turn.blocked("input", decision)
            turn.trace.record_inputs({"question": None, "blocked_by": decision.rail,
                                      "stream": turn.req.stream})
            return [], refusal_completion(turn, side="input", rail=decision.rail)
        if decision.status == "modified":
            _put_texts(messages, places, texts)
    question = _text_of(messages[q_index])
    turn.question = question
    turn.trace.record_inputs({"question": question[:4000], "stream": turn.req.stream})
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
                turn.notice(RAIL_FAILED_OPEN.format(side="input"))
            if decision.blocked:
                turn.blocked("input", decision)
                return [], refusal_completion(turn, side="input", rail=decision.rail)
        passages = await retrieval if retrieval is not None else None
    finally:
        if retrieval is not None and not retrieval.done():
            retrieval.cancel()
    with turn.trace.span("prompt", "PARSER") as span:
        prompt = build_prompt(messages=messages, question=question, passages=passages,
                              system_prompt=cfg.orchestration.system_prompt,
                              template=cfg.orchestration.prompt_template,
                              max_context_tokens=cfg.retrieval.max_context_tokens if cfg.retrieval else 3000)
        span.outputs = {"messages": len(prompt.messages), "citations": len(prompt.citations)}
    if cfg.retrieval is not None:
        turn.citations, turn.passages = prompt.citations, prompt.passages
    return prompt.messages, None


def _payload(turn: Turn, messages: list[dict[str, Any]]) -> dict[str, Any]:
    payload = model_defaults(turn.state, own_limit=turn.req.max_completion_tokens is not None)
    payload.update(turn.req.sampling())
    payload["messages"] = messages
    if turn.req.model != turn.state.config.model.public_name:
        payload["model"] = turn.req.model  # an adapter (checked in run_chat)
    return payload


def check_model(name: str, model: ModelConfig) -> None:
    """A request's `model`: the base's public name, or one of its LoRA adapters."""
    adapters = model.primary.adapters or []
    if name != model.public_name and name not in adapters:
        served = ", ".join(f"`{n}`" for n in (model.public_name, *adapters))
        raise GatewayError(404, f"The model `{name}` does not exist; this gateway serves {served} (see "
                                "GET /v1/models)", code="model_not_found", param="model")


def model_defaults(state: GatewayState, *, own_limit: bool = False) -> dict[str, Any]:
    """The spec's sampling defaults (`model.defaults`), which a request's own values override;
    `own_limit`: the request sets a token limit of a name `max_tokens` does not override."""
    d = state.config.model.defaults
    payload: dict[str, Any] = {}
    if d.temperature is not None:
        payload["temperature"] = d.temperature
    if d.top_p is not None:
        payload["top_p"] = d.top_p
    if d.max_tokens is not None and not own_limit:
        payload["max_tokens"] = d.max_tokens
    return payload


async def _generate(turn: Turn, payload: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed answer: one model call (pipeline) or the agent loop."""
    state = turn.state
    cfg = state.config
    if cfg.orchestration.mode == "agent" and state.toolbox is not None:
        async def complete(body: dict[str, Any]) -> dict[str, Any]:
            with turn.trace.span("generation", "LLM", inputs={"messages": len(body["messages"])}) as span:
                started = time.perf_counter()
                response, target = await turn.model.complete(body, deadline=turn.deadline)
                turn.step("generation", time.perf_counter() - started)
                span.attributes.update({"upstream": target.role, "usage": response.get("usage")})
                answered_by(turn, target)
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
                                     max_steps=cfg.orchestration.max_steps,
                                     deadline=time.monotonic() + budget,
                                     on_tool_call=on_tool)
        except AgentBudgetExceeded as err:
            raise GatewayError(504, f"the agent ran out of its {budget}s budget {err}",
                               code="agent_timeout") from None
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
        response, target = await turn.model.complete(payload, deadline=turn.deadline)
        turn.step("generation", time.perf_counter() - started)
        span.attributes.update({"upstream": target.role, "usage": response.get("usage")})
    answered_by(turn, target)
    return response


async def _extract(turn: Turn, payload: dict[str, Any]) -> dict[str, Any]:
    """An extractive answer: the engine chooses one sentence of the cited passages."""
    assert turn.passages is not None
    model = turn.req.model
    choices = extractive.candidates(turn.passages)
    if not choices:
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
                "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": extractive.NO_PASSAGE},
                             "finish_reason": "stop"}]}
    if turn.embedder is not None and len(choices) > 1:
        with turn.trace.span("extractive.shortlist", "RERANKER", inputs={"candidates": len(choices)}) as span:
            vectors = await turn.embedder.embed([question_of(turn), *(c.text for c in choices)])
            choices = extractive.shortlist(choices, question=vectors[0], vectors=vectors[1:])
            span.outputs = [c.text[:80] for c in choices]
    body = extractive.request(payload["messages"], choices, max_tokens=int(payload.get("max_tokens") or 0))
    response = await _generate(turn, body)
    choice = response["choices"][0]
    try:
        choice["message"]["content"] = extractive.answer(choice["message"].get("content") or "", choices)
    except ValueError as err:
        raise GatewayError(502, f"the model did not give an extractive answer: {err}",
                           code="upstream_error") from None
    choice["finish_reason"] = "stop"
    turn.notice(extractive.notice(model))
    return response


async def output_rails(turn: Turn, question: str, answer: str) -> RailDecision:
    """A whole answer through the output rails; the guardrails engine down ends the trace and is
    the 503 `rails_down()` (the client gets no unjudged answer)."""
    try:
        return await _judge_output(turn, question, answer)
    except GuardrailsUnavailable:
        finish_trace(turn, answer=None, error="guardrails unavailable")
        raise rails_down() from None


async def _judge_output(turn: Turn, question: str, answer: str) -> RailDecision:
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
            llm_decision, failed = await guard.check_llm(side="output", question=question,
                                                         answer=decision.text)
            span.outputs = {"status": llm_decision.status, "rail": llm_decision.rail, "engine_failed": failed}
        if failed:
            turn.metrics.rail_errors.labels("output").inc()
            turn.notice(RAIL_FAILED_OPEN.format(side="output"))
        if llm_decision.blocked:
            decision = llm_decision
    turn.step("rails_output", time.perf_counter() - started)
    if decision.blocked:
        turn.blocked("output", decision)
    return decision


@dataclass
class ChatAnswer:
    """A chat request's answer before it is encoded: the completion (`stream` None), or the open
    relay of the model's stream; `refused`: the input rails refused it (the completion says so)."""

    turn: Turn
    completion: dict[str, Any] | None = None
    stream: Response | None = None
    refused: bool = False


async def handle_chat(*, state: GatewayState, metrics: GatewayMetrics, req: ChatRequest, caller: Caller,
                      tenant: str | None, retriever: Retriever | None,
                      embedder: Embedder | None = None) -> Response:
    answer = await run_chat(state=state, metrics=metrics, req=req, caller=caller, tenant=tenant,
                            retriever=retriever, embedder=embedder)
    turn = answer.turn
    if answer.stream is not None:
        return answer.stream
    assert answer.completion is not None
    if req.stream:  # a refusal, or an agent's or an extractive answer, sent as a stream of one chunk
        events = refusal_stream(turn, answer.completion) if answer.refused else \
            completion_as_stream(answer.completion)
        return StreamingResponse(events, media_type="text/event-stream", headers=turn.headers(SSE_HEADERS))
    return json_response(answer.completion, headers=turn.headers())


async def run_chat(*, state: GatewayState, metrics: GatewayMetrics, req: ChatRequest, caller: Caller,
                   tenant: str | None, retriever: Retriever | None, embedder: Embedder | None = None,
                   trace_name: str = "chat.completions",
                   emit: Callable[[dict[str, Any]], bytes] | None = None,
                   end: Callable[[], bytes] | None = None) -> ChatAnswer:
    """Every layer of a chat request (rails, retrieval, the model or the agent, output rails,
    tracing), short of encoding the answer: `/v1/chat/completions` and `/v1/responses` share it.
    `emit` and `end` write a stream's chunks and its end (`Turn.emit`)."""
    cfg = state.config
    check_model(req.model, cfg.model)
    _check_messages(req, templated=cfg.retrieval is not None or cfg.orchestration.prompt_template is not None)
    if cfg.orchestration.mode == "agent" and (req.tools or req.tool_choice):
        raise GatewayError(400, "this stack is an agent that runs its own tools in the gateway; a "
                                "client's 'tools' and 'tool_choice' are not merged with them (the client "
                                "would run some calls and the gateway others in one loop); send them to a "
                                "pipeline stack", param="tools" if req.tools else "tool_choice",
                           code="unsupported_parameter")
    trace = state.tracer.start(name=trace_name, inputs=None)  # recorded once the rails ran
    turn = Turn(state=state, metrics=metrics, req=req, caller=caller, tenant=tenant, trace=trace,
                embedder=embedder, emit=emit, end=end)
    if cfg.model.notice:
        turn.notice(cfg.model.notice)
    async with within_budget(turn):
        messages, refusal = await _input_stage(turn, retriever)
        if refusal is not None:
            finish_trace(turn, answer=refusal["choices"][0]["message"]["content"], error=None)
            return ChatAnswer(turn, completion=refusal, refused=True)
        payload = _payload(turn, messages)
        agent = cfg.orchestration.mode == "agent" and state.toolbox is not None
        if cfg.model.answers == "extractive" and turn.passages is not None and not agent \
                and not req.shapes_output():
            response = await _extract(turn, payload)  # a quotation: sent whole, also when streamed
        elif req.stream and not agent:
            return ChatAnswer(turn, stream=await start_stream(turn, payload))
        else:
            response = await _generate(turn, payload)
    response["model"] = req.model  # the base's public name or an adapter's (check_model)
    blocked = None
    for choice in response["choices"]:  # each of the `n` answers is judged on its own
        message = choice.get("message") or {}
        decision = await output_rails(turn, question_of(turn), message.get("content") or "")
        if decision.blocked:
            blocked = decision
            break
        if decision.status == "modified":
            message["content"] = decision.text
    if blocked is not None:
        response = refusal_completion(turn, side="output", rail=blocked.rail, usage=response.get("usage"))
    if turn.citations is not None and blocked is None:
        response["citations"] = turn.citations
    finish_trace(turn, answer=response["choices"][0]["message"].get("content"), error=None,
                 usage=response.get("usage"))
    return ChatAnswer(turn, completion=response)


def _texts(messages: list[dict[str, Any]]) -> tuple[list[tuple[int, int | None]], list[tuple[str, str]]]:
    """Every text the client sent, in order: where each sits ((message, part or None)) and
    (role, text)."""
    places: list[tuple[int, int | None]] = []
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        content = m.get("content")
        if isinstance(content, str):
            places.append((i, None))
            turns.append((m["role"], content))
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if part.get("type") == "text":
                    places.append((i, j))
                    turns.append((m["role"], part["text"]))
    return places, turns


def _put_texts(messages: list[dict[str, Any]], places: list[tuple[int, int | None]],
               texts: list[str]) -> None:
    """Write the rails' texts back where `_texts` found them (copies: the request stays as sent)."""
    for (i, j), text in zip(places, texts, strict=True):
        if j is None:
            messages[i] = {**messages[i], "content": text}
        else:
            parts = list(messages[i]["content"])
            parts[j] = {**parts[j], "text": text}
            messages[i] = {**messages[i], "content": parts}


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p["text"] for p in content if p.get("type") == "text")
    return content or ""
