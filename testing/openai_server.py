"""A small, deterministic OpenAI-compatible server that stands in for vLLM or a hosted API.

Why our own: tests and benchmarks need an upstream whose answers, latency and failures are
known in advance, and that runs offline on loopback in milliseconds.

Endpoints: `POST /v1/chat/completions` (JSON or SSE with `data: [DONE]`, tool calls, `n`
choices), `POST /v1/completions` (legacy text completions, JSON or SSE; 404 with
`completions=False`, as from a provider without them), `GET /v1/models`, `POST /v1/embeddings`
(hash vectors), `GET /health`, and `GET /metrics` when `metrics_page` is set (404 otherwise, as
from a hosted API). A parameter neither the OpenAI API nor vLLM knows is refused with OpenAI's own
400 (`Unrecognized request argument supplied: NAME`), so tests can tell a forwarded parameter from
a dropped one.

What it answers (first rule that applies, looking at the **last user message** unless said):

- **judge prompts** (any message contains `(Yes or No)`, as the NeMo self-check prompts that
  aistack generates do): `Yes` when any of `unsafe_markers` appears in the prompt, else `No`.
- `[[fail:500]]`, `[[fail:429]]`, any other status as `[[fail:NNN]]` (429 and 503 carry
  `Retry-After: <retry_after>` when that option is set), `[[fail:timeout]]` (hangs
  `hang_seconds`), `[[fail:reset]]` (streams a few chunks, then drops the connection).
- `[[big:N]]`: answers N times `x`, streamed as one event (for the gateway's line limit).
- `[[sleep:0.2]]`: waits that long before answering (on top of `latency_s`).
- `[[tool:NAME {"json": "args"}]]`: calls tool NAME with those arguments when the request
  offers tools and `tool_choice` is not `"none"`, unless the conversation already holds a
  tool result; after a tool result, it answers `Tool NAME said: <result>`.
- `[[say:TEXT]]`: answers exactly TEXT; `[[say-upper:TEXT]]` answers it upper-cased (so an
  answer can hold an unsafe marker that the question does not, for output-rail tests).
- `[[params]]`: answers the JSON of the parameters it received (all but `model`, `messages`,
  `prompt`), so a test sees through the gateway what reached the upstream.
- `tool_choice` `"required"` or `{"type": "function", "function": {"name": N}}` with `tools`:
  calls that tool (the first for `"required"`) with arguments built from its parameters' schema.
- `response_format` `json_object`: answers `{"answer": <last user message>}`; `json_schema`: an
  instance of the schema (required properties, the first enum value, `"x"`, 1, true).
- otherwise: `Echo: <last user message>`, or the model's entry of `answers_by_model`.

Completions read the prompt (the strings of a list joined) where chat reads the last user message:
the `[[fail:...]]`, `[[sleep:...]]`, `[[say:...]]` and `[[params]]` markers work the same.

Server-wide knobs (constructor or `configure()`): `latency_s` before the first byte,
`chunk_delay_s` between stream chunks, `fail_next` (a list of failure kinds applied to the
next requests, in order: handy for retry tests), `models`, `embedding_dim`.
Every request body is recorded in `requests` (newest last) so tests can assert what an
upstream really received.

Run it in a thread on a free loopback port::

    with run_openai_server() as upstream:
        client = openai.OpenAI(base_url=upstream.base_url, api_key="x")

or as a process: `python -m aistack.testing.openai_server --port 9000`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DEFAULT_MODEL = "test-model"
JUDGE_MARKER = "(Yes or No)"
_FAIL = re.compile(r"\[\[fail:(\d{3}|timeout|reset)\]\]")
_BIG = re.compile(r"\[\[big:(\d+)\]\]")
_SLEEP = re.compile(r"\[\[sleep:([0-9.]+)\]\]")
_TOOL = re.compile(r"\[\[tool:([A-Za-z0-9_-]+)\s*(\{.*?\})?\]\]", re.S)
_SAY = re.compile(r"\[\[say(-upper)?:(.*?)\]\]", re.S)


@dataclass
class ServerOptions:
    """Behaviour of the fake upstream; change it live with `OpenAIServer.configure()`."""

    models: list[str] = field(default_factory=lambda: [DEFAULT_MODEL])
    latency_s: float = 0.0
    chunk_delay_s: float = 0.0
    hang_seconds: float = 30.0
    unsafe_markers: tuple[str, ...] = ("UNSAFE",)
    embedding_dim: int = 16
    fail_next: list[str] = field(default_factory=list)
    api_key: str | None = None
    """When set, requests must carry `Authorization: Bearer <api_key>`."""
    metrics_page: str | None = None
    """What `GET /metrics` answers (Prometheus text, e.g. a page recorded from vLLM); 404 when None."""
    retry_after: str | None = None
    """`Retry-After` sent with injected 429 and 503 answers (seconds or an HTTP date)."""
    completions: bool = True
    """Serve `POST /v1/completions`; False answers 404 as a chat-only provider does."""
    answers_by_model: dict[str, str] = field(default_factory=dict)
    """What these models answer where the others echo (the last rule), `{last}` standing for the last
    user message: two versions of a model that answer differently."""
    loras: dict[str, str] = field(default_factory=dict)
    """LoRA adapters loaded (name -> folder), as vLLM's runtime LoRA endpoints keep them
    (`POST /v1/load_lora_adapter`, `/v1/unload_lora_adapter`); listed in /v1/models with the first
    model as `parent`, and accepted as `model`."""


CHAT_PARAMS = frozenset({
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "stop", "n", "presence_penalty", "frequency_penalty", "seed", "user",
    "response_format", "tools", "tool_choice", "parallel_tool_calls", "logprobs", "top_logprobs",
    "logit_bias", "metadata", "store", "service_tier", "modalities", "reasoning_effort", "prediction",
    "audio", "web_search_options", "prompt_cache_key", "safety_identifier", "verbosity",
    # vLLM's own
    "top_k", "min_p", "repetition_penalty", "structured_outputs", "chat_template_kwargs",
    "skip_special_tokens", "ignore_eos", "min_tokens", "include_stop_str_in_output",
})
COMPLETION_PARAMS = frozenset({
    "model", "prompt", "stream", "stream_options", "temperature", "top_p", "max_tokens", "stop", "n",
    "presence_penalty", "frequency_penalty", "seed", "user", "logprobs", "logit_bias", "echo", "suffix",
    "best_of", "top_k", "min_p", "repetition_penalty", "structured_outputs", "min_tokens", "ignore_eos",
})


def schema_instance(schema: Any) -> Any:
    """A small value valid against a JSON schema (the common keywords only)."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return schema_instance(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: schema_instance(props[k]) for k in schema.get("required", list(props)) if k in props}
    if kind == "array":
        return [schema_instance(schema.get("items") or {"type": "string"})]
    return {"string": "x", "integer": 1, "number": 1.0, "boolean": True, "null": None}.get(str(kind), "x")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def hash_embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector for `text` (same text, same vector, any machine)."""
    raw = b""
    counter = 0
    while len(raw) < dim * 4:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [int.from_bytes(raw[i * 4:i * 4 + 4], "big") / 2**32 - 0.5 for i in range(dim)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _tokens(text: str) -> int:
    return len(text.split())


class OpenAIServer:
    """The ASGI app plus its options and request log."""

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/completions", self._completions, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/v1/load_lora_adapter", self._load_lora, methods=["POST"]),
            Route("/v1/unload_lora_adapter", self._unload_lora, methods=["POST"]),
            Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            Route("/health", self._health, methods=["GET"]),
            Route("/metrics", self._metrics, methods=["GET"]),
        ])

    def configure(self, **changes: Any) -> None:
        """Change options live (e.g. `configure(fail_next=["500", "500"])`)."""
        with self._lock:
            for key, value in changes.items():
                if not hasattr(self.options, key):
                    raise TypeError(f"unknown option {key!r}")
                setattr(self.options, key, value)

    def _take_failure(self) -> str | None:
        with self._lock:
            return self.options.fail_next.pop(0) if self.options.fail_next else None

    @staticmethod
    def _error(status: int, message: str, code: str | None = None,
               headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": {"message": message,
                                       "type": "server_error" if status >= 500 else "invalid_request_error",
                                       "param": None, "code": code}}, status_code=status, headers=headers)

    def _retry_after(self) -> dict[str, str] | None:
        return {"Retry-After": self.options.retry_after} if self.options.retry_after else None

    def _unauthorized(self, request: Request) -> JSONResponse | None:
        if self.options.api_key and request.headers.get("authorization") != f"Bearer {self.options.api_key}":
            return self._error(401, "invalid api key", "invalid_api_key")
        return None

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _metrics(self, request: Request) -> Response:
        page = self.options.metrics_page
        if page is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return Response(page, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def _models(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        with self._lock:
            loras = dict(self.options.loras)
        return JSONResponse({"object": "list", "data": [
            *({"id": m, "object": "model", "created": 0, "owned_by": "aistack-test"}
              for m in self.options.models),
            *({"id": name, "object": "model", "created": 0, "owned_by": "aistack-test", "root": path,
               "parent": self.options.models[0]} for name, path in loras.items())]})

    async def _load_lora(self, request: Request) -> Response:
        body = await request.json()
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return self._error(400, "Both 'lora_name' and 'lora_path' must be provided.")
        with self._lock:
            self.requests.append({"load_lora_adapter": body})
            if name in self.options.loras:
                return self._error(400, f"The lora adapter '{name}' has already been loaded.")
            self.options.loras[name] = path
        return Response(f"Success: LoRA adapter '{name}' added successfully.", media_type="text/plain")

    async def _unload_lora(self, request: Request) -> Response:
        body = await request.json()
        name = body.get("lora_name")
        with self._lock:
            self.requests.append({"unload_lora_adapter": body})
            if self.options.loras.pop(name, None) is None:
                return self._error(404, f"The lora adapter '{name}' cannot be found.", "not_found")
        return Response(f"Success: LoRA adapter '{name}' removed successfully.", media_type="text/plain")

    async def _embeddings(self, request: Request) -> Response:
        if (denied := self._unauthorized(request)) is not None:
            return denied
        body = await request.json()
        failure = self._take_failure()
        if failure is not None and failure.isdigit():
            return self._error(int(failure), "injected failure",
                               headers=self._retry_after() if failure in ("429", "503") else None)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dim = int(body.get("dimensions") or self.options.embedding_dim)
        data = [{"object": "embedding", "index": i, "embedding": hash_embedding(str(t), dim)}
                for i, t in enumerate(texts)]
        used = sum(_tokens(str(t)) for t in texts)
        return JSONResponse({"object": "list", "data": data, "model": body.get("model", DEFAULT_MODEL),
                             "usage": {"prompt_tokens": used, "total_tokens": used}})

    def _plan(self, body: dict[str, Any]) -> tuple[str | None, str, dict[str, Any] | None, float]:
        """(failure, answer text, tool call or None, extra delay) for one request."""
        messages = body.get("messages") or []
        if "prompt" in body:  # a completion: the prompt is the question
            prompt = body["prompt"]
            messages = [{"role": "user", "content": prompt if isinstance(prompt, str) else
                         "\n".join(str(p) for p in prompt)}]
        everything = "\n".join(_text(m.get("content")) for m in messages)
        users = [m for m in messages if m.get("role") == "user"]
        last = _text(users[-1].get("content")) if users else ""
        if JUDGE_MARKER in everything:
            return None, "Yes" if any(mk in everything
                                      for mk in self.options.unsafe_markers) else "No", None, 0.0
        failure = self._take_failure()
        if failure is None and (m := _FAIL.search(last)):
            failure = m.group(1)
        delay = float(m.group(1)) if (m := _SLEEP.search(last)) else 0.0
        tool_results = [m for m in messages if m.get("role") == "tool"]
        if (m := _TOOL.search(last)):
            name = m.group(1)
            if tool_results:
                return failure, f"Tool {name} said: {_text(tool_results[-1].get('content'))}", None, delay
            if body.get("tools") and body.get("tool_choice") != "none":
                return failure, "", {"name": name, "arguments": m.group(2) or "{}"}, delay
        if (m := _BIG.search(last)):
            return failure, "x" * int(m.group(1)), None, delay
        if (m := _SAY.search(last)):
            return failure, m.group(2).upper() if m.group(1) else m.group(2), None, delay
        if "[[params]]" in last:
            received = {k: v for k, v in body.items() if k not in ("model", "messages", "prompt")}
            return failure, json.dumps(received, sort_keys=True), None, delay
        if (call := self._forced_call(body)) is not None and not tool_results:
            return failure, "", call, delay
        answer_format = body.get("response_format") or {}
        if answer_format.get("type") == "json_object":
            return failure, json.dumps({"answer": last}), None, delay
        if answer_format.get("type") == "json_schema":
            schema = (answer_format.get("json_schema") or {}).get("schema")
            return failure, json.dumps(schema_instance(schema)), None, delay
        choices = (body.get("structured_outputs") or {}).get("choice")
        if choices:  # vLLM's structured outputs: one of the choices, the first (`[[say:...]]` overrides)
            return failure, str(choices[0]), None, delay
        template = self.options.answers_by_model.get(str(body.get("model")))
        return failure, template.replace("{last}", last) if template else f"Echo: {last}", None, delay

    @staticmethod
    def _forced_call(body: dict[str, Any]) -> dict[str, Any] | None:
        """The call `tool_choice` forces (`"required"`: the first tool; a named function: that one)."""
        tools = [t.get("function") or {} for t in body.get("tools") or [] if isinstance(t, dict)]
        choice = body.get("tool_choice")
        if not tools or choice in (None, "auto", "none"):
            return None
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            tools = [t for t in tools if t.get("name") == name]
            if not tools:
                return None
        tool = tools[0]
        return {"name": tool.get("name", ""),
                "arguments": json.dumps(schema_instance(tool.get("parameters") or {"type": "object"}))}

    async def _read(self, request: Request, known: frozenset[str]) -> dict[str, Any] | JSONResponse:
        """The body, recorded; or the error OpenAI answers (401, 400 for an unknown argument, 404)."""
        if (denied := self._unauthorized(request)) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "body is not JSON")
        with self._lock:
            self.requests.append(body)
        unknown = sorted(set(body) - known)
        if unknown:
            return self._error(400, f"Unrecognized request argument supplied: {unknown[0]}")
        model = body.get("model")
        if model not in self.options.models and model not in self.options.loras:
            return self._error(404, f"The model `{model}` does not exist.", "model_not_found")
        return body

    async def _injected(self, failure: str | None, delay: float) -> Response | None:
        """Wait, then the injected failure's answer (None: answer normally)."""
        wait = self.options.latency_s + delay
        if wait:
            await asyncio.sleep(wait)
        if failure == "429":
            return self._error(429, "injected rate limit", "rate_limit_exceeded", self._retry_after())
        if failure is not None and failure.isdigit():
            return self._error(int(failure), "injected failure",
                               headers=self._retry_after() if failure == "503" else None)
        if failure == "timeout":
            await asyncio.sleep(self.options.hang_seconds)
            return self._error(504, "hung for hang_seconds")
        return None

    @staticmethod
    def _cut(answer: str, body: dict[str, Any], finish: str) -> tuple[list[str], str, str]:
        """(words, answer, finish_reason) within the request's max_tokens (a word is a token)."""
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        words = answer.split(" ")
        if max_tokens is not None and len(words) > max_tokens:
            words, finish = words[:max_tokens], "length"
            answer = " ".join(words)
        return words, answer, finish

    async def _chat(self, request: Request) -> Response:
        body = await self._read(request, CHAT_PARAMS)
        if isinstance(body, JSONResponse):
            return body
        model = body["model"]
        failure, answer, tool_call, delay = self._plan(body)
        if (refused := await self._injected(failure, delay)) is not None:
            return refused
        n = int(body.get("n") or 1)
        prompt_tokens = sum(_tokens(_text(m.get("content"))) for m in body.get("messages") or [])
        words, answer, finish = self._cut(answer, body, "tool_calls" if tool_call else "stop")
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n * _tokens(answer),
                 "total_tokens": prompt_tokens + n * _tokens(answer)}
        cid = f"chatcmpl-{uuid.uuid4().hex[:16]}"
        created = int(time.time())
        calls = None
        if tool_call:
            calls = [{"id": f"call_{uuid.uuid4().hex[:8]}", "type": "function", "function": tool_call}]
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": answer if not calls else None}
            if calls:
                message["tool_calls"] = calls
            return JSONResponse({"id": cid, "object": "chat.completion", "created": created, "model": model,
                                 "choices": [{"index": i, "message": message, "finish_reason": finish}
                                             for i in range(n)],
                                 "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            self._stream(cid, created, model, words, calls, finish, usage if include_usage else None,
                         failure == "reset", n),
            media_type="text/event-stream")

    async def _stream(self, cid: str, created: int, model: str, words: list[str],
                      calls: list[dict[str, Any]] | None, finish: str, usage: dict[str, int] | None,
                      reset: bool, n: int = 1) -> AsyncIterator[bytes]:
        def event(delta: dict[str, Any], finish_reason: str | None = None, index: int = 0) -> bytes:
            chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}]}
            return f"data: {json.dumps(chunk)}\n\n".encode()

        for index in range(n):
            yield event({"role": "assistant", "content": ""}, index=index)
        if calls:
            call = calls[0]
            name = call["function"]["name"]
            for index in range(n):
                yield event({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                             "function": {"name": name, "arguments": ""}}]}, index=index)
                yield event({"tool_calls": [{"index": 0,
                                             "function": {"arguments": call["function"]["arguments"]}}]},
                            index=index)
        else:
            for i, word in enumerate(words):
                if reset and i == 2:
                    raise ConnectionResetError("injected connection reset mid-stream")
                if self.options.chunk_delay_s:
                    await asyncio.sleep(self.options.chunk_delay_s)
                for index in range(n):  # the answers interleaved, as vLLM streams n > 1
                    yield event({"content": word if i == 0 else " " + word}, index=index)
            if reset:
                raise ConnectionResetError("injected connection reset mid-stream")
        for index in range(n):
            yield event({}, finish, index=index)
        if usage is not None:
            chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [], "usage": usage}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    async def _completions(self, request: Request) -> Response:
        if not self.options.completions:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        body = await self._read(request, COMPLETION_PARAMS)
        if isinstance(body, JSONResponse):
            return body
        model = body["model"]
        failure, answer, _, delay = self._plan(body)
        if (refused := await self._injected(failure, delay)) is not None:
            return refused
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
        n = int(body.get("n") or 1) * max(1, len(prompts))
        words, answer, finish = self._cut(answer, body, "stop")
        prompt_tokens = sum(_tokens(str(p)) for p in prompts)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n * _tokens(answer),
                 "total_tokens": prompt_tokens + n * _tokens(answer)}
        cid, created = f"cmpl-{uuid.uuid4().hex[:16]}", int(time.time())
        if not body.get("stream"):
            return JSONResponse({"id": cid, "object": "text_completion", "created": created, "model": model,
                                 "choices": [{"index": i, "text": answer, "logprobs": None,
                                              "finish_reason": finish} for i in range(n)],
                                 "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def stream() -> AsyncIterator[bytes]:
            def event(text: str, finish_reason: str | None, index: int) -> bytes:
                chunk = {"id": cid, "object": "text_completion", "created": created, "model": model,
                         "choices": [{"index": index, "text": text, "logprobs": None,
                                      "finish_reason": finish_reason}]}
                return f"data: {json.dumps(chunk)}\n\n".encode()

            for i, word in enumerate(words):
                if self.options.chunk_delay_s:
                    await asyncio.sleep(self.options.chunk_delay_s)
                for index in range(n):
                    yield event(word if i == 0 else " " + word, None, index)
            for index in range(n):
                yield event("", finish, index)
            if include_usage:
                chunk = {"id": cid, "object": "text_completion", "created": created, "model": model,
                         "choices": [], "usage": usage}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")


@dataclass
class RunningServer:
    """A server running in a background thread; `base_url` ends with `/v1`."""

    server: OpenAIServer
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.server.requests

    def configure(self, **changes: Any) -> None:
        self.server.configure(**changes)


@contextlib.contextmanager
def serve_in_thread(app: Any, *, host: str = "127.0.0.1", ready_timeout: float = 10.0) -> Iterator[int]:
    """Run any ASGI app with uvicorn in a daemon thread on a free loopback port; yields the port.

    The socket is bound before the thread starts, so there is no race for the port.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1,
                            access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"uvicorn-{port}")
    thread.start()
    deadline = time.monotonic() + ready_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start within {ready_timeout}s")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.contextmanager
def run_openai_server(options: ServerOptions | None = None, **option_values: Any) -> Iterator[RunningServer]:
    """Start the fake upstream on a free loopback port for the duration of the block."""
    opts = options or ServerOptions(**option_values)
    server = OpenAIServer(opts)
    with serve_in_thread(server.app) as port:
        yield RunningServer(server=server, host="127.0.0.1", port=port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Deterministic OpenAI-compatible test server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--model", action="append", help="served model name (repeatable)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before the first byte")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between stream chunks")
    args = parser.parse_args(argv)
    opts = ServerOptions(models=args.model or [DEFAULT_MODEL], latency_s=args.latency,
                         chunk_delay_s=args.chunk_delay)
    uvicorn.run(OpenAIServer(opts).app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
