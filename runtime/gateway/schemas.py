"""Request bodies the gateway accepts, validated at the edge.

Unknown top-level parameters are refused with 400 (the OpenAI API does the same), so a
client never believes a parameter took effect when it was silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aistack.runtime.gateway.errors import GatewayError

_M = TypeVar("_M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    arguments: str


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type", "text") == "text")
        return ""


class ChatRequest(_Strict):
    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[Message], Field(min_length=1)]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: str | list[str] | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    seed: int | None = None
    user: str | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    metadata: dict[str, str] | None = None

    def sampling(self) -> dict[str, Any]:
        """Parameters forwarded upstream as given (everything but model, messages, stream)."""
        return self.model_dump(exclude_none=True,
                               exclude={"model", "messages", "stream", "stream_options", "metadata"})


class EmbeddingsRequest(_Strict):
    model: Annotated[str, Field(min_length=1)]
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = None
    user: str | None = None


def parse_body(model: type[_M], raw: bytes) -> _M:
    """Validate a JSON body, turning pydantic's errors into one clear 400."""
    if not raw.strip():
        raise GatewayError(400, "the request body is empty; send a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        first = err.errors()[0]
        if first["type"] == "json_invalid":
            raise GatewayError(400, f"the request body is not valid JSON ({first['msg']})",
                               code="invalid_json") from None
        loc = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            raise GatewayError(400, f"unsupported parameter {loc!r}", param=loc,
                               code="unsupported_parameter") from None
        if loc == "n":
            raise GatewayError(400, "only n=1 is supported", param="n", code="unsupported_value") from None
        raise GatewayError(400, f"invalid {loc or 'body'}: {first['msg']}", param=loc or None) from None
