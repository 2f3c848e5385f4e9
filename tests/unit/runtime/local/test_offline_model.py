"""The offline model really generates, offline, and labels every answer."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from aistack.runtime.local.offline_model import OFFLINE_MODEL_NAME, OfflineModel, offline_app


@pytest.mark.slow
def test_offline_model_generates_a_labelled_answer_plain_and_streamed() -> None:
    client = TestClient(offline_app(OfflineModel(), instead_of="gpt-4o-mini"))
    assert client.get("/v1/models").json()["data"][0]["id"] == OFFLINE_MODEL_NAME
    body = {"model": OFFLINE_MODEL_NAME, "max_tokens": 8, "messages": [{"role": "user", "content": "Say hello."}]}
    answer = client.post("/v1/chat/completions", json=body).json()
    content = answer["choices"][0]["message"]["content"]
    assert content.startswith("[offline model SmolLM2-135M-Instruct, not gpt-4o-mini; answers are weak] ")
    assert len(content) > len("[offline model SmolLM2-135M-Instruct, not gpt-4o-mini; answers are weak] ")
    assert 0 < answer["usage"]["completion_tokens"] <= 8 and answer["model"] == OFFLINE_MODEL_NAME
    stream = client.post("/v1/chat/completions", json={**body, "stream": True, "max_tokens": 4}).text
    assert stream.startswith("data: ") and '"content": "[offline' in stream and stream.rstrip().endswith("data: [DONE]")
