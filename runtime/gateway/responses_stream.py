"""The Responses API's stream, written from the chat path's: `response.created`,
`response.in_progress`, then per output item `response.output_item.added`, for text
`response.content_part.added` / `response.output_text.delta`... / `response.output_text.done` /
`response.content_part.done`, for a function call `response.function_call_arguments.delta`... /
`.done`, then `response.output_item.done`, and last `response.completed` (or `response.incomplete`
when the answer was cut at `max_output_tokens` or refused by a rail; an upstream failure is an
`error` event and `response.failed`). Each event carries `sequence_number` and its `event:` name.

The chat relay has already run the output rails over the text, so what is translated here is
what the client may see; an answer the chat path gives whole (an agent's, an extractive quote,
a refusal) is written as one delta.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any


from aistack.runtime.gateway.jsonio import dumps

if TYPE_CHECKING:
    from aistack.runtime.gateway.responses import ResponsesRequest


async def whole_answer_events(writer: EventWriter, completion: dict[str, Any]) -> AsyncIterator[bytes]:
    """The event stream of an answer the chat path gave whole (an agent's, an extractive quote, a
    refusal): one delta. A streamed answer needs no wrapper: the relay writes through `writer.emit`."""
    yield writer.emit(_as_chunk(completion))
    yield writer.end()


def response_object(req: ResponsesRequest, *, model: str, output: list[dict[str, Any]], status: str,
                    usage: dict[str, Any] | None, incomplete: str | None = None,
                    response_id: str | None = None, created: float | None = None) -> dict[str, Any]:
    """The `response` object, echoing the request's settings as the Responses API does."""
    return {
        "id": response_id or f"resp_{uuid.uuid4().hex}", "object": "response",
        "created_at": created or int(time.time()), "status": status, "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": req.instructions, "max_output_tokens": req.max_output_tokens, "model": model,
        "output": output, "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": None, "reasoning": {"effort": None, "summary": None}, "store": False,
        "temperature": req.temperature, "text": req.text or {"format": {"type": "text"}},
        "tool_choice": req.tool_choice or "auto", "tools": req.tools or [], "top_p": req.top_p,
        "truncation": req.truncation or "disabled", "usage": usage, "user": req.user,
        "metadata": req.metadata or {},
    }


def usage_of(chat_usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not chat_usage:
        return None
    cached = (chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": chat_usage.get("prompt_tokens", 0),
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": chat_usage.get("completion_tokens", 0),
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": chat_usage.get("total_tokens", 0)}


INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def message_item(text: str, *, logprobs: list[dict[str, Any]] | None = None,
                 item_id: str | None = None, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id or f"msg_{uuid.uuid4().hex}", "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [],
                         "logprobs": [_logprob(p) for p in logprobs or []]}]}


def _logprob(entry: dict[str, Any]) -> dict[str, Any]:
    def one(e: dict[str, Any]) -> dict[str, Any]:
        return {"token": e.get("token"), "logprob": e.get("logprob"), "bytes": e.get("bytes") or []}

    return {**one(entry), "top_logprobs": [one(t) for t in entry.get("top_logprobs") or []]}


def _as_chunk(completion: dict[str, Any]) -> dict[str, Any]:
    choice = completion["choices"][0]
    message = choice.get("message") or {}
    delta: dict[str, Any] = {"content": message.get("content") or ""}
    calls = message.get("tool_calls") or []
    if calls:
        delta["tool_calls"] = [{"index": i, "id": c.get("id"), "function": c.get("function") or {}}
                               for i, c in enumerate(calls)]
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason"),
                          "logprobs": choice.get("logprobs")}], "usage": completion.get("usage")}
    for key in ("citations", "aistack"):
        if key in completion:
            chunk[key] = completion[key]
    return chunk


_DELTA_HEAD = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
               b'"sequence_number":')
_DELTA_TAIL = b',"logprobs":[]}\n\n'


class EventWriter:
    """The Responses events for the chat chunks fed to it (the first choice's)."""

    def __init__(self, req: ResponsesRequest, *, model: str) -> None:
        self.req = req
        self.model = model
        self.id = f"resp_{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.sequence = 0
        self.items: list[dict[str, Any]] = []
        """Output items in the order they started: {"kind", "id", "index", ...}."""
        self.message: dict[str, Any] | None = None
        self.calls: dict[int, dict[str, Any]] = {}
        self.logprobs: list[dict[str, Any]] = []
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.extra: dict[str, Any] = {}
        self.started = False
        self.ended = False
        """`response.failed` was written: nothing follows it."""

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = dumps({"type": kind, "sequence_number": self.sequence, **fields})
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def _response(self, status: str, output: list[dict[str, Any]], *, usage: dict[str, Any] | None = None,
                  incomplete: str | None = None) -> dict[str, Any]:
        out = response_object(self.req, model=self.model, output=output, status=status, usage=usage,
                              incomplete=incomplete, response_id=self.id, created=self.created)
        out.update(self.extra)
        return out

    def emit(self, chunk: dict[str, Any]) -> bytes:
        """A chat chunk from the relay (`Turn.emit`), as the Responses events it makes (the first
        call starts the stream with `response.created`).

        The common chunk, one more piece of text of the open message, is written here without
        building an event dict or another call (a stream has one per token: ~1.1 us each so, ~3 us
        the general way); any other chunk goes through `feed`."""
        message = self.message
        if message is not None:
            choices = chunk.get("choices")
            if choices and len(choices) == 1:
                choice = choices[0]
                delta = choice.get("delta")
                if type(delta) is dict and len(delta) == 1 and (text := delta.get("content")) \
                        and not (choice.get("finish_reason") or choice.get("logprobs") or choice.get("index")
                                 or chunk.get("usage") or "citations" in chunk or "aistack" in chunk):
                    message["parts"].append(text)
                    sequence = self.sequence
                    self.sequence = sequence + 1
                    return b"".join((_DELTA_HEAD, b"%d" % sequence, message["delta_mid"], dumps(text),
                                     _DELTA_TAIL))
        head = b"" if self.started else self.start()
        if "error" in chunk:
            return head + self.failed(chunk["error"])
        return head + b"".join(self.feed(chunk))

    def end(self) -> bytes:
        """The stream's last events (`Turn.end`); nothing after a failure."""
        if self.ended:
            return b""
        return (b"" if self.started else self.start()) + self.finish()

    def start(self) -> bytes:
        """`response.created` and `response.in_progress`, one encoding of the response for both."""
        self.started = True
        response = dumps(self._response("in_progress", []))
        out: list[bytes] = []
        for kind in (b"response.created", b"response.in_progress"):
            out += (b"event: ", kind, b'\ndata: {"type":"', kind, b'","sequence_number":',
                    str(self.sequence).encode(), b',"response":', response, b"}\n\n")
            self.sequence += 1
        return b"".join(out)

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        for key in ("citations", "aistack"):
            if key in chunk:
                self.extra[key] = chunk[key]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                out += self._text(delta["content"])
            self.logprobs += (choice.get("logprobs") or {}).get("content") or []
            for call in delta.get("tool_calls") or []:
                out += self._call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def _text(self, text: str) -> list[bytes]:
        out = []
        item = self.message
        if item is None:
            item = self.message = {"kind": "message", "id": f"msg_{uuid.uuid4().hex}",
                                   "index": len(self.items), "parts": []}
            item["delta_mid"] = (f',"item_id":"{item["id"]}","output_index":{item["index"]},'
                                 '"content_index":0,"delta":').encode()
            self.items.append(item)
            out.append(self._event("response.output_item.added", output_index=item["index"], item={
                "type": "message", "id": item["id"], "status": "in_progress", "role": "assistant",
                "content": []}))
            out.append(self._event("response.content_part.added", item_id=item["id"],
                                   output_index=item["index"], content_index=0,
                                   part={"type": "output_text", "text": "", "annotations": [],
                                         "logprobs": []}))
        item["parts"].append(text)
        out.append(self._event("response.output_text.delta", item_id=item["id"], output_index=item["index"],
                               content_index=0, delta=text, logprobs=[]))
        return out

    def _call(self, call: dict[str, Any]) -> list[bytes]:
        out = []
        function = call.get("function") or {}
        item = self.calls.get(call.get("index", 0))
        if item is None:
            item = {"kind": "function_call", "id": f"fc_{uuid.uuid4().hex}", "index": len(self.items),
                    "call_id": call.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                    "name": function.get("name") or "", "arguments": []}
            self.calls[call.get("index", 0)] = item
            self.items.append(item)
            out.append(self._event("response.output_item.added", output_index=item["index"], item={
                "type": "function_call", "id": item["id"], "call_id": item["call_id"], "name": item["name"],
                "arguments": "", "status": "in_progress"}))
        if function.get("arguments"):
            item["arguments"].append(function["arguments"])
            out.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                   output_index=item["index"], delta=function["arguments"]))
        return out

    def finish(self) -> bytes:
        out: list[bytes] = []
        output: list[dict[str, Any]] = []
        for item in self.items:
            if item["kind"] == "message":
                text = "".join(item["parts"])
                whole = message_item(text, logprobs=self.logprobs, item_id=item["id"])
                part = whole["content"][0]
                out.append(self._event("response.output_text.done", item_id=item["id"],
                                       output_index=item["index"], content_index=0, text=text,
                                       logprobs=part["logprobs"]))
                out.append(self._event("response.content_part.done", item_id=item["id"],
                                       output_index=item["index"], content_index=0, part=part))
            else:
                arguments = "".join(item["arguments"])
                whole = {"type": "function_call", "id": item["id"], "call_id": item["call_id"],
                         "name": item["name"], "arguments": arguments, "status": "completed"}
                out.append(self._event("response.function_call_arguments.done", item_id=item["id"],
                                       output_index=item["index"], name=item["name"], arguments=arguments))
            out.append(self._event("response.output_item.done", output_index=item["index"], item=whole))
            output.append(whole)
        reason = INCOMPLETE.get(self.finish_reason or "")
        response = self._response("incomplete" if reason else "completed", output, usage=usage_of(self.usage),
                                  incomplete=reason)
        out.append(self._event("response.incomplete" if reason else "response.completed", response=response))
        return b"".join(out)

    def failed(self, error: dict[str, Any]) -> bytes:
        self.ended = True
        response = self._response("failed", [])
        response["error"] = {"code": error.get("code") or "server_error", "message": error.get("message")}
        return self._event("error", code=error.get("code"), message=error.get("message"),
                           param=error.get("param")) + self._event("response.failed", response=response)
