"""The README's table of the gateway's OpenAI API names every endpoint the gateway serves and every
parameter each request body types (the bodies are the models in schemas.py and responses.py), so
the table cannot fall behind the code."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from aistack.api.gateway_config import GatewayConfig
from aistack.runtime.gateway.app import create_app
from aistack.runtime.gateway.responses import ResponsesRequest
from aistack.runtime.gateway.schemas import ChatRequest, CompletionRequest, EmbeddingsRequest
from aistack.testing.gateway import base_config

README = Path(__file__).resolve().parents[4] / "README.md"


def table() -> dict[str, str]:
    """The rows of the table under "The gateway's OpenAI API", by their first cell."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### The gateway's OpenAI API", 1)[1].split("\n## ", 1)[0]
    return {line.split("|")[1].strip(): line for line in section.splitlines()
            if line.startswith("| `")}


def test_every_route_of_the_gateway_is_in_the_table() -> None:
    app = create_app(GatewayConfig.model_validate(base_config("http://127.0.0.1:9/v1")))
    routes = {route.path for route in app.routes if getattr(route, "include_in_schema", True) is False}
    assert {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/models"} <= routes
    cells = " ".join(table())
    assert [path for path in routes if f" {path}`" not in cells and f"`{path}`" not in cells] == []


@pytest.mark.parametrize(("row", "body"), [
    ("`POST /v1/chat/completions`", ChatRequest), ("`POST /v1/completions`", CompletionRequest),
    ("`POST /v1/responses`", ResponsesRequest), ("`POST /v1/embeddings`", EmbeddingsRequest)])
def test_every_parameter_of_a_body_is_in_its_row(row: str, body: type[BaseModel]) -> None:
    text = table()[row]
    missing = [name for name in body.model_fields if name != "model" and f"`{name}" not in text]
    assert missing == [], f"README.md's row {row} lacks {missing}"
