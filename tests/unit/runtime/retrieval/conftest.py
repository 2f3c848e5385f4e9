"""Fixtures for the retrieval tests: the real MiniLM model (loaded once) and a loopback
OpenAI-compatible embeddings server backed by it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from aistack.runtime.retrieval.embedders import LocalEmbedder
from aistack.testing.openai_server import serve_in_thread


@pytest.fixture(scope="session")
def minilm() -> LocalEmbedder:
    return LocalEmbedder(model="sentence-transformers/all-MiniLM-L6-v2", batch_size=16)


@pytest.fixture(scope="session")
def embeddings_server(minilm: LocalEmbedder) -> Iterator[dict]:
    """`/v1/embeddings` serving MiniLM; `state` switches it to misbehave for one test."""
    state: dict = {"mode": "ok", "calls": [], "auth": []}
    app = FastAPI()

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        state["calls"].append(len(body["input"]))
        state["auth"].append(request.headers.get("authorization"))
        if state["mode"] == "error":
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        vectors = await minilm.embed(body["input"])
        if state["mode"] == "short":
            vectors = [v[:100] for v in vectors]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return JSONResponse({"object": "list", "data": list(reversed(data)), "model": body["model"]})

    with serve_in_thread(app) as port:
        yield {"url": f"http://127.0.0.1:{port}/v1", "state": state}
