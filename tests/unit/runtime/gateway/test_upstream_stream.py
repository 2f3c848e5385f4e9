"""A stream whose connection breaks: the events the upstream sent before it broke reach the relay
before the error, however late the relay reads them (aiohttp's reader raises a broken connection's
error ahead of the bytes it already holds; the gateway's line reader hands those over first)."""

from __future__ import annotations

import asyncio
import json

import pytest

from aistack.api.gateway_config import Upstream
from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.gateway.upstream import HttpPool, ModelClient, UpstreamError


def event(text: str) -> bytes:
    data = f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': text}}]})}\n\n".encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"  # one HTTP chunk


async def broken_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers any request with three events, then closes without the stream's last chunk."""
    await reader.readuntil(b"\r\n\r\n")  # its body is not read: the answer does not depend on it
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    writer.write(event("one"))
    await writer.drain()
    await asyncio.sleep(0.05)  # the client has opened the stream on the first event
    writer.write(event(" two") + event(" three") + b"2a\r\ndata: {\"choices\": [{\"ind")  # and a cut event
    await writer.drain()
    writer.close()


@pytest.mark.parametrize("late_s", [0.0, 0.3])
def test_events_received_before_a_broken_connection_reach_the_reader(late_s: float) -> None:
    async def main() -> tuple[list[str], UpstreamError]:
        server = await asyncio.start_server(broken_upstream, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        model = ModelClient(primary=Upstream(base_url=f"http://127.0.0.1:{port}/v1", model="m"),
                            fallback=None, http=HttpPool(), metrics=GatewayMetrics())
        texts: list[str] = []
        try:
            stream = await model.stream({"messages": [{"role": "user", "content": "hi"}], "stream": True})
            await asyncio.sleep(late_s)  # a loaded gateway reads after the connection broke
            with pytest.raises(UpstreamError) as err:
                async for chunk in stream:
                    texts.append(chunk["choices"][0]["delta"]["content"])
            return texts, err.value
        finally:
            await model.http.aclose()
            server.close()
            await server.wait_closed()

    texts, error = asyncio.run(main())
    assert texts == ["one", " two", " three"]  # the cut event is not one
    assert error.status == 502 and "connection broke mid-stream" in error.message
