"""The bounded agent: tool calls validated against their schema, failures reported to the model."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aistack.testing.gateway import base_config, run_gateway
from aistack.testing.openai_server import serve_in_thread

SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string", "pattern": "^[A-Z0-9]{8}$"}},
          "required": ["order_id"], "additionalProperties": False}


async def status(request: Request) -> Response:
    body = await request.json()
    assert request.headers.get("authorization") == "Bearer tool-token"
    return JSONResponse({"order_id": body["order_id"], "status": "shipped"})


async def broken(request: Request) -> Response:
    return JSONResponse({"detail": "database down"}, status_code=500)


async def garbage(request: Request) -> Response:
    return Response(b"\x00\x01\x02", media_type="application/octet-stream")


async def slow(request: Request) -> Response:
    await asyncio.sleep(2)
    return JSONResponse({})


async def search(request: Request) -> Response:
    return JSONResponse({"q": request.query_params.get("q")})


@pytest.fixture(scope="module")
def tools_url():
    app = Starlette(routes=[Route("/status", status, methods=["POST"]),
                            Route("/broken", broken, methods=["POST"]),
                            Route("/garbage", garbage, methods=["POST"]),
                            Route("/slow", slow, methods=["POST"]),
                            Route("/search", search, methods=["GET"])])
    with serve_in_thread(app) as port:
        yield f"http://127.0.0.1:{port}"


def tool(name, url, **kw):
    return {"name": name, "description": f"the {name} tool", "endpoint": url,
            "method": kw.pop("method", "POST"),
            "parameters": kw.pop("parameters", SCHEMA), "timeoutSeconds": kw.pop("timeout", 0.5), **kw}


@pytest.fixture(scope="module")
def agent(upstream, tools_url):
    import os
    os.environ["ORDERS_TOKEN"] = "tool-token"
    cfg = base_config(upstream.base_url, orchestration={"mode": "agent", "maxSteps": 3, "tools": [
        tool("order_status", f"{tools_url}/status", authEnv="ORDERS_TOKEN"),
        tool("broken", f"{tools_url}/broken"), tool("garbage", f"{tools_url}/garbage"),
        tool("slow", f"{tools_url}/slow"),
        tool("search", f"{tools_url}/search", method="GET",
             parameters={"type": "object", "properties": {"q": {"type": "string"}}})]})
    with run_gateway(cfg) as gw:
        yield gw


def run(agent, text, **kw):
    return agent.client().chat.completions.create(model="demo-model",
                                                  messages=[{"role": "user", "content": text}], **kw)


def test_tool_call_round_trip(agent, upstream):
    out = run(agent, '[[tool:order_status {"order_id": "AB12CD34"}]]')
    assert out.choices[
        0].message.content == 'Tool order_status said: {"order_id":"AB12CD34","status":"shipped"}'
    assert out.aistack["steps"] == 2
    assert out.aistack["tool_calls"][0]["outcome"] == "ok"
    offered = [t["function"]["name"] for t in upstream.requests[-2]["tools"]]
    assert offered == ["order_status", "broken", "garbage", "slow", "search"]


def test_get_tool_gets_query_parameters(agent):
    out = run(agent, '[[tool:search {"q": "refunds"}]]')
    assert out.choices[0].message.content == 'Tool search said: {"q":"refunds"}'


@pytest.mark.parametrize(("call", "outcome", "fragment"), [
    ('[[tool:order_status {"order_id": "bad"}]]', "invalid_arguments", "invalid arguments at order_id"),
    ('[[tool:order_status {"order_id": "AB12CD34", "x": 1}]]', "invalid_arguments", "Additional properties"),
    ("[[tool:order_status {not json}]]", "bad_arguments", "not valid JSON"),
    ('[[tool:launch_missiles {"order_id": "AB12CD34"}]]', "unknown_tool", "no tool named 'launch_missiles'"),
    ('[[tool:broken {"order_id": "AB12CD34"}]]', "http_error", "HTTP 500"),
    ('[[tool:garbage {"order_id": "AB12CD34"}]]', "garbage", "empty or binary"),
    ('[[tool:slow {"order_id": "AB12CD34"}]]', "timeout", "did not answer within 0.5s"),
])
def test_tool_failures_are_reported_to_the_model(agent, upstream, call, outcome, fragment):
    out = run(agent, call)
    assert out.choices[0].finish_reason == "stop"
    assert out.aistack["tool_calls"][0]["outcome"] == outcome
    tool_message = upstream.requests[-1]["messages"][-1]
    assert tool_message["role"] == "tool" and fragment in tool_message["content"]
    assert fragment in out.choices[0].message.content


def test_max_steps_forces_an_answer_on_the_last_step(upstream, tools_url):
    cfg = base_config(upstream.base_url, orchestration={"mode": "agent", "maxSteps": 1,
                                                       "tools": [tool("order_status",
                                                                      f"{tools_url}/status")]})
    with run_gateway(cfg) as gw:
        out = run(gw, '[[tool:order_status {"order_id": "AB12CD34"}]]')
    assert upstream.requests[-1]["tool_choice"] == "none"
    assert out.aistack["steps"] == 1 and out.choices[0].message.content.startswith("Echo:")


def test_wall_clock_budget_is_504(upstream, tools_url):
    cfg = base_config(upstream.base_url,
                      orchestration={"mode": "agent", "maxSteps": 3, "timeouts": {"requestSeconds": 0.3},
                                                       "tools": [tool("slow", f"{tools_url}/slow",
                                                                      timeout=5)]})
    with run_gateway(cfg) as gw:
        with pytest.raises(openai.InternalServerError) as err:
            run(gw, '[[tool:slow {"order_id": "AB12CD34"}]]')
    assert err.value.status_code == 504 and err.value.code == "request_timeout"


def test_agent_streams_its_final_answer(agent):
    chunks = list(run(agent, '[[tool:order_status {"order_id": "AB12CD34"}]]', stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text.removeprefix("Tool order_status said: "))["status"] == "shipped"


def test_client_tools_are_refused_in_agent_mode(agent):
    with pytest.raises(openai.BadRequestError, match="own tools"):
        run(agent, "x",
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])


def test_tool_metrics(agent):
    run(agent, '[[tool:order_status {"order_id": "AB12CD34"}]]')
    assert 'aistack_gateway_tool_calls_total{outcome="ok",tool="order_status"}' in agent.metrics()
