"""Request bodies the gateway accepts, validated at the edge.

The parameters the gateway itself reads are typed strictly, as the OpenAI API types them:
`"stream": "yes"` or `"max_tokens": "12"` is refused, never coerced. A model parameter the
gateway does not know is forwarded to the model as sent (vLLM's `top_k` or `structured_outputs`,
a newer OpenAI parameter): the upstream accepts it or refuses it with its own 400, which the
client gets; it is never silently dropped. The few that would undo the stack's own layers
(`GATEWAY_OWNED`) are refused here.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aistack.runtime.gateway.errors import GatewayError

_M = TypeVar("_M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    name: str
    arguments: str


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    """Text, or content parts (checked by the chat handler, which knows what the stack can carry)."""
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


GATEWAY_OWNED = {
    "chat_template": "the chat template is the model's: a request's own template would decide what the "
                     "model sees past the stack's prompt and rails",
}
"""Parameters an engine accepts that no client may set through the gateway, with the reason."""


class _Forwarding(BaseModel):
    """Typed fields strict; any other top-level parameter kept, to be forwarded to the model. The
    fields here are those chat and text completions share, typed as the OpenAI API types them."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: Annotated[str, Field(min_length=1)]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: str | list[str] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    seed: int | None = None
    user: str | None = None
    logit_bias: dict[str, float] | None = None

    NOT_FORWARDED: ClassVar[set[str]] = {"model", "stream", "stream_options"}
    """What the gateway itself turns into the upstream's request, or keeps to itself."""

    def sampling(self) -> dict[str, Any]:
        """Parameters forwarded upstream as given (all but `NOT_FORWARDED`), the ones the gateway
        does not know included."""
        return self.model_dump(exclude_none=True, exclude=self.NOT_FORWARDED)

    def model_post_init(self, context: Any) -> None:
        for name in self.__pydantic_extra__ or ():
            if name in GATEWAY_OWNED:
                raise GatewayError(400, f"unsupported parameter {name!r}: {GATEWAY_OWNED[name]}", param=name,
                                   code="unsupported_parameter")


class ChatRequest(_Forwarding):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    metadata: dict[str, str] | None = None

    NOT_FORWARDED = _Forwarding.NOT_FORWARDED | {"messages", "metadata"}

    def shapes_output(self) -> bool:
        """The client asked for the output in a form of its own (JSON, a tool call, several
        choices, log-probabilities): the model's own answer must come back, not a quotation."""
        return bool(self.response_format or self.tools or (self.n or 1) > 1 or self.logprobs
                    or (self.__pydantic_extra__ or {}).get("structured_outputs"))


class CompletionRequest(_Forwarding):
    """`POST /v1/completions` (legacy text completions): the prompt is text, as the rails must read
    it (token-id prompts are refused)."""

    prompt: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    echo: bool | None = None
    suffix: str | None = None

    NOT_FORWARDED = _Forwarding.NOT_FORWARDED | {"prompt"}

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


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
        loc = ".".join(str(p) for p in first["loc"] if not _is_type_tag(p))
        if first["type"] == "extra_forbidden":
            raise GatewayError(400, f"unsupported parameter {loc!r}", param=loc,
                               code="unsupported_parameter") from None
        if first["type"] == "literal_error":
            raise GatewayError(400, f"invalid value for {loc!r}: {first['msg']}, got {first['input']!r}",
                               param=loc, code="invalid_value") from None
        if first["type"] in _EXPECTED:
            raise GatewayError(400, _type_message(err, loc), param=loc or None, code="invalid_type") from None
        raise GatewayError(400, f"invalid {loc or 'body'}: {first['msg']}", param=loc or None) from None


_EXPECTED = {"string_type": "a string", "int_type": "an integer", "float_type": "a number",
             "bool_type": "a boolean", "list_type": "an array", "dict_type": "an object",
             "model_type": "an object"}
_JSON_TYPES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array",
               dict: "an object", type(None): "null"}


def _is_type_tag(part: object) -> bool:
    """pydantic's name of a union member in an error's location (`str`, `list[str]`), not a field."""
    return isinstance(part, str) and (part in {"str", "int", "float", "bool", "dict", "list", "none"}
                                      or "[" in part)


def _type_message(err: ValidationError, loc: str) -> str:
    """The OpenAI API's wording: `invalid type for 'max_tokens': expected an integer, but got a
    string instead`; a union's members are listed together."""
    first = err.errors()[0]
    expected = []
    for e in err.errors():
        if ".".join(str(p) for p in e["loc"] if not _is_type_tag(p)) == loc and e["type"] in _EXPECTED:
            expected.append(_EXPECTED[e["type"]])
    got = _JSON_TYPES.get(type(first["input"]), "another type")
    return f"invalid type for {loc!r}: expected {' or '.join(dict.fromkeys(expected))}, but got {got} instead"
