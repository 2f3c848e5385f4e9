"""A bare streaming HTTP relay: the floor under any Python gateway's added time to first token.

It forwards `POST /v1/chat/completions` to one upstream and copies the response back chunk by chunk
as it arrives: no validation, no JSON, no rails, no tracing, no metrics, on the same event loop
(uvloop) and the same client (aiohttp) the gateway uses. bench/engine.py times it beside the
gateway, so the gateway's added TTFT splits into what one HTTP hop costs on the machine (this
relay's) and what the gateway's own work costs on top (the difference between the two).

    .venv/bin/python bench/relay.py --port 8099 --upstream http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import aiohttp
import uvloop
from aiohttp import web

HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive"}


async def relay(request: web.Request) -> web.StreamResponse:
    session: aiohttp.ClientSession = request.app["session"]
    body = await request.read()
    async with session.post(f"{request.app['upstream']}/v1/chat/completions", data=body,
                            headers={"content-type": "application/json"}) as upstream:
        response = web.StreamResponse(status=upstream.status, headers={
            k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS})
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    app["upstream"] = upstream.rstrip("/")

    async def session(app: web.Application):  # type: ignore[no-untyped-def]
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
        yield
        await app["session"].close()

    app.cleanup_ctx.append(session)
    app.router.add_post("/v1/chat/completions", relay)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a bare streaming relay to one OpenAI-compatible server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL, without /v1")
    args = parser.parse_args(argv)
    web.run_app(make_app(args.upstream), host=args.host, port=args.port, print=None,
                loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
