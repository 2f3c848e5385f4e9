"""API calls are retried as the API server's flow control asks (429, Retry-After), through the
real `kubernetes` client against a loopback server that turns requests away first."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes.client import ApiClient, Configuration
from urllib3 import HTTPResponse

from aistack.operator.kube import (CHILD_KINDS, RETRY_AFTER_CAP, ApiError, ApiRetry, Kube, api_retries,
                                   with_retries)

CONFIG_MAP = CHILD_KINDS["ConfigMap"]


class TurnAway:
    """Answers the first `refuse` requests with `status` and a Retry-After, then 200."""

    def __init__(self) -> None:
        self.refuse, self.status, self.retry_after = 0, 429, "0"
        self.seen: list[str] = []


@pytest.fixture
def server() -> Iterator[tuple[TurnAway, str]]:
    state = TurnAway()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            state.seen.append(self.command)
            if len(state.seen) <= state.refuse:
                body = json.dumps({"kind": "Status", "code": state.status, "message": "too many requests"})
                self.send_response(state.status)
                self.send_header("Retry-After", state.retry_after)
            else:
                body = json.dumps({"metadata": {"name": "x"}})
                self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        do_GET = do_PATCH = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def kube(url: str, *, retries: bool = True) -> Kube:
    configuration = Configuration()
    configuration.host = url
    return Kube(ApiClient(with_retries(configuration) if retries else configuration))


@pytest.mark.parametrize("method", ["GET", "PATCH", "POST"])
def test_a_429_is_retried_until_the_server_takes_the_request(server, method) -> None:
    state, url = server
    state.refuse = 2
    client = kube(url)
    if method == "GET":
        assert client.get(CONFIG_MAP, "default", "x") == {"metadata": {"name": "x"}}
    elif method == "PATCH":
        client.patch(CONFIG_MAP, "default", "x", {"data": {"a": "b"}})
    else:
        client.create(CONFIG_MAP, "default", {"metadata": {"name": "x"}})
    assert state.seen == [method] * 3


def test_without_the_retries_one_429_fails_a_write(server) -> None:
    """urllib3's default retries only idempotent methods: a refused PATCH failed the reconcile."""
    state, url = server
    state.refuse = 1
    with pytest.raises(ApiError) as err:
        kube(url, retries=False).patch(CONFIG_MAP, "default", "x", {"data": {}})
    assert err.value.status == 429


def test_a_server_that_keeps_refusing_gives_the_429_after_five_retries(server) -> None:
    state, url = server
    state.refuse = 100
    configuration = Configuration()
    configuration.host = url
    configuration.retries = api_retries().new(backoff_factor=0.01, backoff_jitter=0.0)  # same tries, faster
    with pytest.raises(ApiError) as err:
        Kube(ApiClient(configuration)).get(CONFIG_MAP, "default", "x")
    assert err.value.status == 429 and "too many requests" in str(err.value)
    assert len(state.seen) == 6


def test_an_error_that_may_have_acted_is_not_resent(server) -> None:
    state, url = server
    state.refuse, state.status, state.retry_after = 1, 500, ""
    with pytest.raises(ApiError) as err:
        kube(url).patch(CONFIG_MAP, "default", "x", {"data": {}})
    assert err.value.status == 500 and state.seen == ["PATCH"]


def test_retry_after_is_honoured_capped_and_jittered() -> None:
    retry = api_retries()
    assert isinstance(retry, ApiRetry) and retry.respect_retry_after_header

    def after(value: str) -> float | None:
        return retry.get_retry_after(HTTPResponse(status=429, headers={"Retry-After": value}))

    waits = {after("2") for _ in range(50)}
    assert all(2.0 <= w <= 3.0 for w in waits) and len(waits) > 1  # jittered, never early
    assert all(RETRY_AFTER_CAP <= after("3600") <= 1.5 * RETRY_AFTER_CAP for _ in range(20))
    assert after("nonsense") is None  # then the backoff applies
