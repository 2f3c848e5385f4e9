"""`POST /v1/completions`: the legacy text-completion API, passed through to an engine that serves
it (vLLM, OpenAI's own), with the layers that apply to a raw prompt.

The API key and its tenant are checked by the app, as for chat; the input rails screen every
prompt (a block is a refusal, a mask reaches the model masked), the output rails judge each
choice's text, the request is traced with the config hash and held to its budget. There is no
retrieval: a raw prompt has no question for the stack's prompt template to wrap, so no tenant's
documents reach a completion at all. A provider without the endpoint answers 404, which the
client gets as a 400 that says to use chat (`upstream.endpoint()`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi.responses import Response, StreamingResponse

from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.gateway.auth import Caller
from aistack.runtime.gateway.chat import check_model, model_defaults, output_rails
from aistack.runtime.gateway.jsonio import json_response, sse
from aistack.runtime.gateway.schemas import CompletionRequest
from aistack.runtime.gateway.state import GatewayState
from aistack.runtime.gateway.streaming import start_stream
from aistack.runtime.gateway.turn import (DONE, RAIL_FAILED_OPEN, SSE_HEADERS, Turn, answered_by,
                                          finish_trace, within_budget)


async def handle_completion(*, state: GatewayState, metrics: GatewayMetrics, req: CompletionRequest,
                            caller: Caller, tenant: str | None) -> Response:
    cfg = state.config
    check_model(req.model, cfg.model)
    turn: Turn[CompletionRequest] = Turn(state=state, metrics=metrics, req=req, caller=caller, tenant=tenant,
                                         trace=state.tracer.start(name="completions", inputs=None))
    if cfg.model.notice:
        turn.notice(cfg.model.notice)
    async with within_budget(turn):
        prompts, refusal = await _screen(turn)
        if refusal is not None:
            finish_trace(turn, answer=refusal["choices"][0]["text"], error=None)
            if req.stream:
                return StreamingResponse(_one_event(refusal), media_type="text/event-stream",
                                         headers=turn.headers(SSE_HEADERS))
            return json_response(refusal, headers=turn.headers())
        payload = {**model_defaults(state), **req.sampling(),
                   "prompt": prompts[0] if isinstance(req.prompt, str) else prompts,
                   **({"model": req.model} if req.model != cfg.model.public_name else {})}
        if req.stream:
            return await start_stream(turn, payload)
        with turn.trace.span("generation", "LLM", inputs={"prompts": len(prompts)}) as span:
            started = time.perf_counter()
            response, target = await turn.model.complete(payload, deadline=turn.deadline)
            turn.step("generation", time.perf_counter() - started)
            span.attributes.update({"upstream": target.role, "usage": response.get("usage")})
        answered_by(turn, target)
    response["model"] = req.model
    for choice in response.get("choices") or []:
        decision = await output_rails(turn, turn.question, choice.get("text") or "")
        if decision.blocked:
            response = _refusal(turn, side="output", rail=decision.rail, usage=response.get("usage"))
            break
        if decision.status == "modified":
            choice["text"] = decision.text
    finish_trace(turn, answer=(response.get("choices") or [{}])[0].get("text"), error=None,
                 usage=response.get("usage"))
    return json_response(response, headers=turn.headers())


async def _screen(turn: Turn[CompletionRequest]) -> tuple[list[str], dict[str, Any] | None]:
    """(the prompts as the input rails let them through, a refusal or None). The trace records
    the prompt only after the rails."""
    req = turn.req
    prompts = req.prompts()
    guard = turn.state.guard
    if guard is not None and guard.fast_input:
        started = time.perf_counter()
        with turn.trace.span("rails.input.fast", "GUARDRAIL",
                             inputs={"rails": guard.fast_input.rails, "prompts": len(prompts)}) as span:
            decision, texts = guard.fast_input.check_conversation([("user", p) for p in prompts])
            span.outputs = {"status": decision.status, "rail": decision.rail}
        turn.step("rails_input_fast", time.perf_counter() - started)
        if decision.blocked:
            turn.blocked("input", decision)
            turn.trace.record_inputs({"prompt": None, "blocked_by": decision.rail, "stream": req.stream})
            return [], _refusal(turn, side="input", rail=decision.rail)
        prompts = list(texts)
    turn.question = "\n".join(prompts)
    turn.trace.record_inputs({"prompt": turn.question[:4000], "stream": req.stream})
    if guard is not None and guard.llm_input:
        started = time.perf_counter()
        with turn.trace.span("rails.input.llm", "GUARDRAIL", inputs={"rail": "self_check_input"}) as span:
            decision, failed = await guard.check_llm(side="input", question=turn.question)
            span.outputs = {"status": decision.status, "rail": decision.rail, "engine_failed": failed}
        turn.step("rails_input_llm", time.perf_counter() - started)
        if failed:
            turn.metrics.rail_errors.labels("input").inc()
            turn.notice(RAIL_FAILED_OPEN.format(side="input"))
        if decision.blocked:
            turn.blocked("input", decision)
            return [], _refusal(turn, side="input", rail=decision.rail)
    return prompts, None


def _refusal(turn: Turn[CompletionRequest], *, side: str, rail: str | None,
             usage: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
        "model": turn.req.model,
        "choices": [{"index": 0, "text": turn.state.guard.refusal if turn.state.guard else "",
                     "logprobs": None, "finish_reason": "content_filter"}],
        "aistack": {"blocked_by": rail, "side": side},
    }
    if usage:
        out["usage"] = usage
    return out


async def _one_event(completion: dict[str, Any]) -> Any:
    yield sse(completion)
    yield DONE
