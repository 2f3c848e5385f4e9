"""The bounded agent: the OpenAI tool-calling protocol with the spec's HTTP tools.

Bounded by `max_steps` model calls (the last one is made with `tool_choice: "none"`, so the
model must answer) and by the request's wall-clock budget. Arguments are validated against the
tool's JSON Schema before any call; every failure (unknown tool, bad JSON, schema violation,
HTTP error, timeout, garbage) goes back to the model as the tool's result, never up as a crash.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from aistack.api.gateway_config import ToolConfig

MAX_RESULT_CHARS = 8000


@dataclass
class AgentResult:
    response: dict[str, Any]
    """The final upstream completion."""
    steps: int
    tool_calls: list[dict[str, Any]]
    """One entry per call: name, arguments, outcome, result (truncated)."""


class Toolbox:
    """The declared tools, their validators and credentials."""

    def __init__(self, *, tools: list[ToolConfig], http: httpx.AsyncClient) -> None:
        self.tools = {t.name: t for t in tools}
        self._validators = {t.name: Draft202012Validator(t.parameters) for t in tools}
        self._headers: dict[str, dict[str, str]] = {}
        for t in tools:
            headers = {}
            if t.auth_env:
                token = os.environ.get(t.auth_env)
                if not token:
                    raise ValueError(
                        f"tool {t.name!r} needs its token in env var {t.auth_env}, which is unset or empty")
                headers["Authorization"] = f"Bearer {token}"
            self._headers[t.name] = headers
        self.http = http

    def openai_tools(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                  "parameters": t.parameters}} for t in self.tools.values()]

    async def call(self, name: str, arguments: str) -> tuple[str, str]:
        """(outcome, text for the model); outcome is `ok` or a failure class."""
        tool = self.tools.get(name)
        if tool is None:
            available = ", ".join(self.tools) or "none"
            return "unknown_tool", f"error: there is no tool named {name!r}; available: {available}"
        try:
            args = json.loads(arguments or "{}")
        except ValueError as err:
            return "bad_arguments", f"error: the arguments are not valid JSON ({err}); send a JSON object"
        errors = sorted(self._validators[name].iter_errors(args), key=lambda e: list(e.absolute_path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "<root>"
            return "invalid_arguments", f"error: invalid arguments at {where}: {errors[0].message}"
        try:
            if tool.method == "GET":
                resp = await self.http.get(tool.endpoint, params={k: str(v) for k, v in args.items()},
                                           headers=self._headers[name], timeout=tool.timeout_seconds)
            else:
                resp = await self.http.post(tool.endpoint, json=args, headers=self._headers[name],
                                            timeout=tool.timeout_seconds)
        except httpx.TimeoutException:
            return "timeout", f"error: the tool did not answer within {tool.timeout_seconds}s"
        except httpx.HTTPError as err:
            return "unreachable", f"error: the tool is unreachable ({type(err).__name__})"
        text = resp.content.decode("utf-8", errors="replace")
        if resp.status_code >= 400:
            return "http_error", f"error: the tool failed with HTTP {resp.status_code}: {text[:500]}"
        if not text.strip() or "\x00" in text:
            return "garbage", "error: the tool returned an empty or binary answer"
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + " [truncated]"
        return "ok", text


class AgentBudgetExceeded(Exception):
    """The wall-clock budget ran out between steps."""


Complete = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
OnToolCall = Callable[[str, str, str, str, float], None]


async def run_agent(*, complete: Complete, payload: dict[str, Any], toolbox: Toolbox, max_steps: int,
                    deadline: float, on_tool_call: OnToolCall | None = None) -> AgentResult:
    """Call the model until it answers without tool calls, for at most `max_steps` calls.

    `complete` sends one non-streamed request upstream; `deadline` is a `time.monotonic()` value
    (the caller also enforces it with a timeout around the whole loop).
    """
    messages = list(payload["messages"])
    calls: list[dict[str, Any]] = []
    tools = toolbox.openai_tools()
    for step in range(1, max_steps + 1):
        if time.monotonic() >= deadline:
            raise AgentBudgetExceeded(f"after {step - 1} steps")
        last_step = step == max_steps
        body = {**payload, "messages": messages, "tools": tools,
                "tool_choice": "none" if last_step else "auto"}
        response = await complete(body)
        message = (response.get("choices") or [{}])[0].get("message") or {}
        tool_calls = message.get("tool_calls") or []
        if not tool_calls or last_step:
            return AgentResult(response=response, steps=step, tool_calls=calls)
        messages.append({"role": "assistant", "content": message.get("content"), "tool_calls": tool_calls})
        for call in tool_calls:
            fn = call.get("function") or {}
            name, arguments = str(fn.get("name")), str(fn.get("arguments") or "")
            started = time.perf_counter()
            outcome, text = await toolbox.call(name, arguments)
            if on_tool_call is not None:
                on_tool_call(name, arguments, outcome, text, time.perf_counter() - started)
            calls.append({"name": name, "arguments": arguments, "outcome": outcome, "result": text[:500]})
            messages.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": text})
    raise AssertionError("unreachable: the last step always returns")
