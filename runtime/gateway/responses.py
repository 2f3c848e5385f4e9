"""`POST /v1/responses`: OpenAI's Responses API, stateless, translated to a chat completion.

Translating is the one route that is correct for every provider (vLLM, a hosted API, the offline
model) and it runs every layer of the chat path unchanged (`run_chat()`: keys and tenants, the
input rails over every input item, retrieval and the prompt template, the model or the agent, the
output rails, tracing with the config hash, the budget). The request is checked here
(`ResponsesRequest`), its `input` items become chat messages, `text.format` the
`response_format`, function `tools` chat tools; the chat answer becomes a `response` object, and a
stream the Responses event sequence (`responses_stream.py`).

Stateless: the gateway keeps no responses, so `previous_response_id`, `conversation`, an
`item_reference` and `store: true` are a 400 that says to send the conversation in `input` (a
store would hold every tenant's conversations beside the rails' masks, with a retention and an
access model of its own to get right; the Agents SDK and most clients send the whole input anyway).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.gateway.auth import Caller
from aistack.runtime.gateway.chat import run_chat
from aistack.runtime.gateway.errors import GatewayError
from aistack.runtime.gateway.jsonio import json_response
from aistack.runtime.gateway.responses_stream import (INCOMPLETE, EventWriter, message_item,
                                                      response_object, usage_of, whole_answer_events)
from aistack.runtime.gateway.schemas import ChatRequest
from aistack.runtime.gateway.state import GatewayState
from aistack.runtime.gateway.turn import SSE_HEADERS
from aistack.runtime.retrieval.contracts import Embedder, Retriever

SEND_THE_CONVERSATION = ("this gateway keeps no responses (stateless); send the whole conversation in "
                         "'input' instead (earlier outputs and function_call_output items included)")
INCLUDABLE = {"message.output_text.logprobs"}
"""`include` values the gateway can honour (from the chat answer's logprobs)."""


class ResponsesRequest(BaseModel):
    """The Responses API body. Unknown parameters are a 400: there is no Responses upstream to pass
    them to, and a chat upstream would not know them."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model: Annotated[str, Field(min_length=1)]
    input: str | Annotated[list[dict[str, Any]], Field(min_length=1)]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    metadata: dict[str, str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    include: list[str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    reasoning: dict[str, Any] | None = None
    background: bool | None = None


def _bad(message: str, param: str, code: str = "unsupported_parameter") -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def to_chat(req: ResponsesRequest) -> ChatRequest:
    """The chat request that answers `req`, or a 400 naming what cannot be carried."""
    if req.previous_response_id is not None:
        raise _bad(f"'previous_response_id' is not supported: {SEND_THE_CONVERSATION}",
                   "previous_response_id")
    if req.conversation is not None:
        raise _bad(f"'conversation' is not supported: {SEND_THE_CONVERSATION}", "conversation")
    if req.store:
        raise _bad(f"'store: true' is not supported: {SEND_THE_CONVERSATION}; send store: false or leave it "
                   "out", "store")
    if req.background:
        raise _bad("'background: true' is not supported: the gateway answers in the request (stream it "
                   "instead)", "background")
    for i, value in enumerate(req.include or []):
        if value not in INCLUDABLE:
            raise _bad(f"include[{i}] {value!r} is not supported; this gateway can include "
                       f"{', '.join(sorted(INCLUDABLE))}", f"include.{i}")
    body: dict[str, Any] = {"model": req.model, "messages": _messages(req), "stream": req.stream}
    if req.stream:
        body["stream_options"] = {"include_usage": True}  # for response.completed's usage
    given: dict[str, Any] = {
        "temperature": req.temperature, "top_p": req.top_p, "max_completion_tokens": req.max_output_tokens,
        "parallel_tool_calls": req.parallel_tool_calls, "metadata": req.metadata,
        "user": req.user or req.safety_identifier, "prompt_cache_key": req.prompt_cache_key,
        "service_tier": req.service_tier}
    body.update({name: value for name, value in given.items() if value is not None})
    if req.top_logprobs is not None or "message.output_text.logprobs" in (req.include or []):
        body["logprobs"] = True
        if req.top_logprobs:
            body["top_logprobs"] = req.top_logprobs
    if req.reasoning and req.reasoning.get("effort"):
        body["reasoning_effort"] = req.reasoning["effort"]
    if req.tools:
        body["tools"] = [_tool(tool, i) for i, tool in enumerate(req.tools)]
    if req.tool_choice is not None:
        body["tool_choice"] = _tool_choice(req.tool_choice)
    if req.text:
        _text_format(req.text, body)
    return ChatRequest.model_validate(body)


def _messages(req: ResponsesRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        return [*messages, {"role": "user", "content": req.input}]
    for i, item in enumerate(req.input):
        kind = item.get("type", "message")
        where = f"input[{i}]"
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"{where}.role must be user, assistant, system or developer, got {role!r}",
                           f"input.{i}.role", "invalid_value")
            content = _content(item.get("content"), where=where, assistant=role == "assistant")
            messages.append({"role": role, "content": content})
        elif kind == "function_call":
            function = {"name": _str(item, "name", where), "arguments": _str(item, "arguments", where)}
            call = {"id": _str(item, "call_id", where), "type": "function", "function": function}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)  # parallel calls: one assistant turn
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _content(output, where=where, assistant=True)
            messages.append({"role": "tool", "tool_call_id": _str(item, "call_id", where), "content": text})
        elif kind == "reasoning":
            continue  # a reasoning model's own notes: a chat model takes none
        elif kind == "item_reference":
            raise _bad(f"{where}: an item_reference is not supported: {SEND_THE_CONVERSATION}",
                       f"input.{i}.type")
        else:
            raise _bad(f"{where}.type {kind!r} is not supported; this gateway takes message, function_call "
                       "and function_call_output items", f"input.{i}.type", "invalid_value")
    return messages


def _str(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise _bad(f"{where}.{key} must be a string", f"{where.replace('[', '.').rstrip(']')}.{key}",
                   "invalid_type")
    return value


def _content(content: Any, *, where: str, assistant: bool) -> str | list[dict[str, Any]]:
    """A message's content as chat carries it: text parts as text (an assistant's joined into a
    string), `input_image` as `image_url`."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or an array of parts", f"{where}.content",
                   "invalid_type")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and not assistant and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"],
                                                             "detail": part.get("detail") or "auto"}})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        else:
            raise _bad(f"{where}.content[{j}] of type {kind!r} is not supported; send input_text, "
                       "output_text or input_image parts", f"{where}.content.{j}.type", "invalid_value")
    if assistant or all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts) if assistant else parts
    return parts


def _tool(tool: dict[str, Any], i: int) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise _bad(f"tools[{i}].type {tool.get('type')!r} is not supported; this gateway serves function "
                   "tools (the hosted tools run at OpenAI)", f"tools.{i}.type", "invalid_value")
    if not isinstance(tool.get("name"), str):
        raise _bad(f"tools[{i}] needs a 'name'", f"tools.{i}.name", "invalid_value")
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict")
                if tool.get(k) is not None}
    return {"type": "function", "function": function}


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise _bad(f"tool_choice {choice!r} must be auto, none, required or a function", "tool_choice",
                       "invalid_value")
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad(f"tool_choice of type {choice.get('type')!r} is not supported; name a function "
               "({'type': 'function', 'name': ...})", "tool_choice", "invalid_value")


def _text_format(text: dict[str, Any], body: dict[str, Any]) -> None:
    for key in text:
        if key not in ("format", "verbosity"):
            raise _bad(f"unsupported parameter 'text.{key}'", f"text.{key}")
    if text.get("verbosity") is not None:
        body["verbosity"] = text["verbosity"]
    fmt = text.get("format") or {"type": "text"}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return
    if kind == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        if not isinstance(fmt.get("schema"), dict) or not isinstance(fmt.get("name"), str):
            raise _bad("text.format json_schema needs 'name' and 'schema'", "text.format", "invalid_value")
        body["response_format"] = {"type": "json_schema", "json_schema": {
            k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}}
    else:
        raise _bad(f"text.format.type {kind!r} must be text, json_object or json_schema", "text.format.type",
                   "invalid_value")


def from_completion(req: ResponsesRequest, completion: dict[str, Any]) -> dict[str, Any]:
    """A chat completion (its first choice) as a `response` object."""
    choice = completion["choices"][0]
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    if message.get("content"):
        logprobs = (choice.get("logprobs") or {}).get("content")
        output.append(message_item(message["content"], logprobs=logprobs))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append({"type": "function_call", "id": f"fc_{uuid.uuid4().hex}", "call_id": call.get("id"),
                       "name": function.get("name"), "arguments": function.get("arguments") or "",
                       "status": "completed"})
    reason = INCOMPLETE.get(choice.get("finish_reason") or "")
    out = response_object(req, model=completion["model"], output=output,
                          status="incomplete" if reason else "completed", incomplete=reason,
                          usage=usage_of(completion.get("usage")))
    for key in ("citations", "aistack"):
        if key in completion:
            out[key] = completion[key]
    return out


async def handle_responses(*, state: GatewayState, metrics: GatewayMetrics, req: ResponsesRequest,
                           caller: Caller, tenant: str | None, retriever: Retriever | None,
                           embedder: Embedder | None = None) -> Response:
    chat = to_chat(req)
    writer = EventWriter(req, model=req.model) if req.stream else None
    answer = await run_chat(state=state, metrics=metrics, req=chat, caller=caller, tenant=tenant,
                            retriever=retriever, embedder=embedder, trace_name="responses",
                            emit=writer.emit if writer is not None else None,
                            end=writer.end if writer is not None else None)
    turn = answer.turn
    if writer is None:
        assert answer.completion is not None
        return json_response(from_completion(req, answer.completion), headers=turn.headers())
    if answer.stream is not None:  # the relay writes the Responses events itself
        return answer.stream
    assert answer.completion is not None
    return StreamingResponse(whole_answer_events(writer, answer.completion), media_type="text/event-stream",
                             headers=turn.headers(SSE_HEADERS))
