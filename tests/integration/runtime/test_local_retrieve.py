"""`POST /aistack/retrieve` (added by `aistack up` to an open gateway): a bad body is a 400 in
the OpenAI error shape, and the keep-alive connection it came on keeps serving."""

from __future__ import annotations

import json
import socket

import pytest

from aistack.api.gateway_config import GatewayConfig
from aistack.runtime.gateway import create_app
from aistack.runtime.gateway.retrieve import PATH, add_local_retrieve
from aistack.runtime.retrieval.contracts import Passage
from aistack.testing.gateway import ListRetriever, base_config
from aistack.testing.openai_server import serve_in_thread


@pytest.fixture(scope="module")
def port(upstream):
    retriever = ListRetriever([Passage(text="Rails run first.", source="guide.md", score=0.9)])
    app = create_app(GatewayConfig.model_validate(base_config(upstream.base_url)))
    add_local_retrieve(app, retriever=retriever, tenant_header="X-Tenant")

    async def broken(request):
        raise RuntimeError("a bug")

    app.add_route("/aistack/broken", broken, methods=["POST"])
    with serve_in_thread(app) as p:
        yield p


def exchange(sock: socket.socket, body: bytes, path: str = PATH) -> tuple[int, dict]:
    """One HTTP/1.1 request on an open connection; (status, JSON body). Raises when the server
    closed the connection instead of answering."""
    sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection (got {data!r})")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-body")
        rest += chunk
    assert b"connection: close" not in head.lower()
    return int(head.split(b" ")[1]), json.loads(rest[:length])


@pytest.mark.parametrize(("body", "param"), [
    (b"{not json", None), (b"[]", None), (b"", None), (b'{"query": 5}', "query"), (b'{"query": ""}', "query"),
    (b'{"q": "x"}', "query"),
])
def test_a_bad_body_is_a_400_and_the_connection_keeps_serving(port, body, param):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        status, error = exchange(sock, body)
        assert status == 400
        assert set(error["error"]) == {"message", "type", "param", "code"}
        assert error["error"]["type"] == "invalid_request_error" and error["error"]["param"] == param
        status, found = exchange(sock, b'{"query": "rails"}')  # the same connection
        assert status == 200 and found["passages"][0]["source"] == "guide.md"


def test_an_unexpected_error_is_an_openai_500_and_the_connection_keeps_serving(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        status, error = exchange(sock, b"{}", path="/aistack/broken")
        assert status == 500 and error["error"]["code"] == "internal_error"
        assert "a bug" not in json.dumps(error), "no detail of the failure leaves the process"
        status, found = exchange(sock, b'{"query": "rails"}')
        assert status == 200 and found["passages"]
