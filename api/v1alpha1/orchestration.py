"""Layer 4, orchestration: a fixed RAG pipeline, or a bounded tool-calling agent."""

from __future__ import annotations

import string
from typing import Annotated, Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import Field, HttpUrl, field_validator, model_validator

from aistack.api.cel import cel_rules, rule
from aistack.api.rules import RuleCollector
from aistack.api.types import ApiModel, SecretKeyRef

TEMPLATE_FIELDS = {"question", "context"}


class Tool(ApiModel):
    """An HTTP tool the agent may call through the OpenAI tool-calling protocol.

    The gateway validates the model's arguments against `parameters` before calling
    `endpoint` with them as a JSON body; a failure is reported back to the model.
    """

    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    """Function name shown to the model."""
    description: Annotated[str, Field(min_length=1, max_length=1024)]
    """What the tool does and when to use it; the model reads this."""
    endpoint: HttpUrl
    """URL the gateway calls."""
    method: Literal["GET", "POST"] = "POST"
    """POST sends the arguments as JSON; GET as query parameters."""
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    """JSON Schema (draft 2020-12) of the arguments; must describe an object."""
    auth_secret_ref: SecretKeyRef | None = None
    """Secret key with a bearer token sent as `Authorization` to the tool."""
    timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 10.0
    """Timeout of one call."""

    @field_validator("parameters")
    @classmethod
    def _json_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(value)
        except SchemaError as err:
            where = "/".join(str(p) for p in err.absolute_path) or "<root>"
            raise ValueError(f"not a valid JSON Schema at {where}: {err.message}") from None
        if value.get("type") != "object":
            raise ValueError("must describe an object: set type: object and its properties")
        return value


class Timeouts(ApiModel):
    """Wall-clock budgets, in seconds."""

    request_seconds: Annotated[float, Field(gt=0, le=3600)] = 120.0
    """Whole request, all steps included."""
    model_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """One model call."""
    retrieval_seconds: Annotated[float, Field(gt=0, le=600)] = 5.0
    """One retrieval."""


class OrchestrationSpec(ApiModel):
    """How a request becomes an answer."""

    model_config = cel_rules(
        rule(
            "!has(self.tools) || size(self.tools) == 0 || (has(self.mode) && self.mode == 'agent')",
            "tools are only called in mode 'agent'",
            '.tools',
        ),
    )

    mode: Literal["pipeline", "agent"] = "pipeline"
    """`pipeline`: retrieve, build the prompt, generate. `agent`: the model may call tools,
    bounded by `maxSteps` and `timeouts.requestSeconds`."""
    system_prompt: Annotated[str, Field(max_length=100_000)] | None = None
    """System message put before the conversation."""
    prompt_template: Annotated[str, Field(max_length=100_000)] | None = None
    """Template of the last user message; placeholders `{question}` (required) and
    `{context}` (the retrieved chunks)."""
    tools: list[Tool] = Field(default_factory=list)
    """Tools for `agent` mode."""
    max_steps: Annotated[int, Field(ge=1, le=50)] = 5
    """Model calls an agent may make for one request."""
    timeouts: Timeouts = Field(default_factory=Timeouts)
    """Time budgets."""

    @field_validator("prompt_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as err:
            raise ValueError(f"is not a valid template ({err}); write literal braces as {{{{ }}}}") from None
        unknown = names - TEMPLATE_FIELDS
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {sorted(unknown)}; allowed: {{question}}, {{context}}"
            )
        if "question" not in names:
            raise ValueError("must contain {question}")
        return value

    @model_validator(mode="after")
    def _check(self) -> OrchestrationSpec:
        rules = RuleCollector()
        if self.tools and self.mode != "agent":
            rules.add(("tools",), "tools are only called in mode 'agent'; set mode: agent")
        seen: set[str] = set()
        for i, tool in enumerate(self.tools):
            if tool.name in seen:
                rules.add(("tools", i, "name"), f"duplicate tool name {tool.name!r}")
            seen.add(tool.name)
        rules.raise_if_any()
        return self

