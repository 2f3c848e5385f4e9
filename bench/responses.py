"""The gateway's CPU per `/v1/responses` request beside a `/v1/chat/completions` request of the
same size (issue 21): the same question and the same answer, plain and streamed, without rails and
with the fast rails, against the deterministic test upstream.

`/v1/responses` is translated to a chat request and its answer back (`runtime/gateway/responses.py`),
so the difference between the two columns is the translation's own cost. Measured in pairs: two
identical gateway processes of each kind serve at once, one chat and the other responses, and swap
roles every round, so both columns see the same background load at the same moments (one case
after the other, a loaded 2-core machine's drift moved a row by 0.1-0.3 ms between batches). The
server CPU per request is read from /proc (Linux only), apart from the load generator's. Last, the
same requests through the whole ASGI app in this process with the model's answer canned: the
translation's own CPU, which no background load moves.

    .venv/bin/python bench/responses.py [--requests 2400] [--concurrency 8] [--rounds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from aistack.runtime.local.ports import free_port

_spec = importlib.util.spec_from_file_location("bench_gateway", Path(__file__).with_name("gateway.py"))
assert _spec is not None and _spec.loader is not None
bench_gateway = sys.modules["bench_gateway"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_gateway)  # its helpers: start(), stop(), process_cpu_s(), gateway_config()

QUESTION = "What does the gateway add to a request? Contact me at a@b.co"
ANSWER = "[[say:" + " ".join(["word"] * 24) + "]]"
"""24 words: the test upstream streams one event per word, so a streamed answer is 24 deltas."""


def body(endpoint: str, *, stream: bool) -> dict[str, Any]:
    text = f"{QUESTION} {ANSWER}"
    if endpoint == "chat":
        return {"model": "demo-model", "messages": [{"role": "user", "content": text}], "max_tokens": 64,
                "stream": stream}
    return {"model": "demo-model", "input": text, "max_output_tokens": 64, "stream": stream}


@dataclass
class Case:
    gateway: str
    endpoint: str  # chat | responses
    stream: bool
    url: str
    pid: int
    cpu_s: float = 0.0
    latencies: list[float] | None = None
    errors: int = 0

    @property
    def name(self) -> str:
        return f"{self.endpoint}{' (stream)' if self.stream else ''}"


async def run_batch(case: Case, *, total: int, concurrency: int) -> None:
    payload = body(case.endpoint, stream=case.stream)
    if case.latencies is None:
        case.latencies = []
    measured = case.latencies
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(latencies: list[float]) -> None:
            started = time.perf_counter()
            try:
                if case.stream:
                    async with client.stream("POST", case.url, json=payload) as resp:
                        async for _ in resp.aiter_raw():
                            pass
                        ok = resp.status_code == 200
                else:
                    resp = await client.post(case.url, json=payload)
                    ok = resp.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                case.errors += 1

        for _ in range(concurrency):  # warm the connections, unmeasured
            await one([])
        queue = iter(range(total))

        async def worker() -> None:
            for _ in queue:
                await one(measured)

        before = bench_gateway.process_cpu_s(case.pid)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        case.cpu_s += bench_gateway.process_cpu_s(case.pid) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2400, help="requests per case, over all rounds")
    parser.add_argument("--concurrency", type=int, default=8, help="in flight per case")
    parser.add_argument("--rounds", type=int, default=8,
                        help="a multiple of 4: each process serves each side, each side starts first")
    args = parser.parse_args()
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="bench-responses-"))
    procs: list[subprocess.Popen[bytes]] = []
    print(f"{os.cpu_count()} CPUs; load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    try:
        up_port = free_port()
        upstream = f"http://127.0.0.1:{up_port}/v1"
        procs.append(bench_gateway.start([py, "-m", "aistack.testing.openai_server", "--port", str(up_port)],
                                         health=f"http://127.0.0.1:{up_port}/health"))
        pairs: list[tuple[Case, Case, list[tuple[int, int]]]] = []
        for name, rails in (("gateway", False), ("gateway+fast rails", True)):
            path = tmp / f"{len(procs)}.yaml"
            path.write_text(yaml.safe_dump(bench_gateway.gateway_config(upstream, rails=rails, tracing=None)))
            servers = []
            for _ in range(2):  # two identical processes, each side served by both in turn
                port = free_port()
                command = [py, "-m", "aistack.runtime", "--host", "127.0.0.1", "--port", str(port),
                           "--config", str(path), "--workers", "1"]
                proc = bench_gateway.start(command, health=f"http://127.0.0.1:{port}/healthz")
                procs.append(proc)
                servers.append((port, proc.pid))
            for stream in (False, True):
                pairs.append((Case(name, "chat", stream, "", 0), Case(name, "responses", stream, "", 0),
                              servers))
        per_round = max(args.requests // args.rounds, 1)
        for round_ in range(args.rounds):
            for chat, resp, servers in pairs:
                (chat_port, chat_pid), (resp_port, resp_pid) = servers[round_ % 2], servers[1 - round_ % 2]
                chat.url, chat.pid = f"http://127.0.0.1:{chat_port}/v1/chat/completions", chat_pid
                resp.url, resp.pid = f"http://127.0.0.1:{resp_port}/v1/responses", resp_pid
                order = [chat, resp] if round_ // 2 % 2 == 0 else [resp, chat]  # who starts first, too
                asyncio.run(run_together(order, total=per_round, concurrency=args.concurrency))
        print(f"\n{per_round * args.rounds} requests per case, concurrency {args.concurrency} per case, the "
              f"two cases of a row at once; load average at end: {os.getloadavg()[0]:.1f}")
        print(f"{'gateway':<20} {'mode':<7} {'chat CPU ms/req':>16} {'responses CPU ms/req':>21} "
              f"{'difference ms':>14} {'chat p50 ms':>12} {'responses p50 ms':>17} {'errors':>7}")
        for chat, resp, _ in pairs:
            chat_cpu = chat.cpu_s / max(len(chat.latencies or []), 1) * 1e3
            resp_cpu = resp.cpu_s / max(len(resp.latencies or []), 1) * 1e3
            print(f"{chat.gateway:<20} {'stream' if chat.stream else 'json':<7} {chat_cpu:>16.3f} "
                  f"{resp_cpu:>21.3f} {resp_cpu - chat_cpu:>+14.3f} "
                  f"{statistics.median(chat.latencies or [0]) * 1e3:>12.2f} "
                  f"{statistics.median(resp.latencies or [0]) * 1e3:>17.2f} {chat.errors + resp.errors:>7}")
    finally:
        for proc in reversed(procs):
            bench_gateway.stop(proc)
    print("\nIn-process, the whole ASGI app with the model's answer canned (no sockets; the median of "
          "6 interleaved rounds of 1000), CPU us per request:")
    for name, rails in (("gateway", False), ("gateway+fast rails", True)):
        costs = in_process_costs(rails=rails)
        for mode in ("json", "stream"):
            chat, resp = costs[f"chat {mode}"], costs[f"responses {mode}"]
            print(f"{name:<20} {mode:<7} chat {chat:8.1f}  responses {resp:8.1f}  "
                  f"difference {resp - chat:+8.1f}")


def in_process_costs(*, rails: bool, requests: int = 1000, rounds: int = 6) -> dict[str, float]:
    """Microseconds of CPU per request through the whole ASGI app in this process, the model's stream
    and answer canned (no sockets, no other process): the translation's own cost, which the machine's
    load does not move. Keys: `chat json`, `responses json`, `chat stream`, `responses stream`."""
    from aistack.api.gateway_config import GatewayConfig
    from aistack.runtime.gateway.app import create_app
    from aistack.runtime.gateway.jsonio import dumps
    from aistack.runtime.gateway.upstream import Target

    config = GatewayConfig.model_validate(
        bench_gateway.gateway_config("http://127.0.0.1:9/v1", rails=rails, tracing=None))
    app = create_app(config)
    target = Target.of("primary", config.model.primary)
    head = {"id": "chatcmpl-0123456789abcdef", "created": 1796527960, "model": "test-model"}
    words = ["word"] + [" word"] * 23
    usage = {"prompt_tokens": 14, "completion_tokens": 24, "total_tokens": 38}

    class Canned:
        """The test upstream's answer to the bench's question, as `ModelClient.stream` hands it over."""

        def __init__(self) -> None:
            self.target = target

        async def __aiter__(self) -> Any:
            chunk = {**head, "object": "chat.completion.chunk"}
            yield {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "finish_reason": None}]}
            for word in words:
                yield {**chunk, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            yield {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            yield {**chunk, "choices": [], "usage": usage}

        async def aclose(self) -> None:
            return None

    async def stream(payload: dict[str, Any], *, deadline: float | None = None) -> Any:
        return Canned()

    async def complete(payload: dict[str, Any], *, deadline: float | None = None) -> Any:
        answer = {"role": "assistant", "content": "".join(words)}
        return ({**head, "object": "chat.completion", "usage": usage,
                 "choices": [{"index": 0, "message": answer, "finish_reason": "stop"}]}, target)

    async def one(path: str, raw: bytes) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "state": {},
                 "headers": [(b"content-type", b"application/json"),
                             (b"content-length", str(len(raw)).encode())]}
        received = False

        async def receive() -> dict[str, Any]:
            nonlocal received
            if received:
                await asyncio.sleep(3600)  # no disconnect while the answer is written
            received = True
            return {"type": "http.request", "body": raw, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            return None

        await app(scope, receive, send)

    async def measure() -> dict[str, float]:
        async with app.router.lifespan_context(app):
            model = app.state["holder"].current.model
            model.stream, model.complete = stream, complete
            costs: dict[str, list[float]] = {}
            pair = [("chat", "/v1/chat/completions"), ("responses", "/v1/responses")]
            for round_ in range(rounds):
                for streamed in (False, True):
                    for endpoint, path in pair if round_ % 2 == 0 else pair[::-1]:
                        raw = dumps(body(endpoint, stream=streamed))
                        started = time.process_time()
                        for _ in range(requests):
                            await one(path, raw)
                        key = f"{endpoint} {'stream' if streamed else 'json'}"
                        costs.setdefault(key, []).append((time.process_time() - started) / requests * 1e6)
            return {key: statistics.median(values) for key, values in costs.items()}

    return asyncio.run(measure())


async def run_together(cases: list[Case], *, total: int, concurrency: int) -> None:
    await asyncio.gather(*(run_batch(case, total=total, concurrency=concurrency) for case in cases))


if __name__ == "__main__":
    main()
