"""The OpenAI Agents SDK's default model (the Responses API) against the gateway: `Runner.run`
completes a turn with a function-tool round trip, plain and streamed.

`openai-agents` needs `openai>=3`, which cannot share the project's environment (the runtime pins
openai 2.x, and llama-index's client pins `openai<3`), so the SDK runs in its own interpreter:
`AISTACK_AGENTS_PYTHON`, one with the `agents-client` extra's pin installed. `make test` makes it
(`make agents-client`: `.venv-agents`, pinned by constraints-agents.txt) and sets the variable; the
test skips, saying why, where it is unset or cannot import the SDK."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from aistack.testing.gateway import base_config, run_gateway

AGENT = r'''
import asyncio, json, sys
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

set_tracing_disabled(True)
calls = []

@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    calls.append(city)
    return f"sunny in {city}"

async def main() -> None:
    client = AsyncOpenAI(base_url=sys.argv[1], api_key="none", max_retries=0)
    agent = Agent(name="weather", instructions="Use the tool.", tools=[get_weather],
                  model=OpenAIResponsesModel(model="demo-model", openai_client=client))
    question = '[[tool:get_weather {"city": "Paris"}]] What is the weather in Paris?'
    plain = await Runner.run(agent, question)
    streamed = Runner.run_streamed(agent, question)
    async for _ in streamed.stream_events():
        pass
    print(json.dumps({"plain": plain.final_output, "streamed": streamed.final_output, "calls": calls}))

asyncio.run(main())
'''


def agents_python() -> str:
    python = os.environ.get("AISTACK_AGENTS_PYTHON")
    if not python:
        pytest.skip("AISTACK_AGENTS_PYTHON is unset (an interpreter with openai-agents==0.24.0; see the "
                    "module docstring)")
    probe = subprocess.run([python, "-c", "import agents"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"{python} cannot import agents: {probe.stderr.strip()[-200:]}")
    return python


def test_the_agents_sdk_runner_completes_a_function_tool_round_trip(upstream):
    python = agents_python()
    with run_gateway(base_config(upstream.base_url)) as gw:
        before = len(upstream.requests)
        done = subprocess.run([python, "-c", AGENT, f"{gw.url}/v1"], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "OPENAI_AGENTS_DISABLE_TRACING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["calls"] == ["Paris", "Paris"]  # the tool ran once per run, with the model's arguments
    assert result["plain"] == result["streamed"] == "Tool get_weather said: sunny in Paris"
    sent = upstream.requests[before:]
    assert [m["role"] for m in sent[1]["messages"]][-2:] == ["assistant", "tool"]
    assert sent[0]["tools"][0]["function"]["name"] == "get_weather"
