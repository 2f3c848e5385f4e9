"""The gateway's CPU per `/v1/responses` request beside a `/v1/chat/completions` request of the
same size (issue 21): the same question and the same answer, plain and streamed, without rails and
with the fast rails, against the deterministic test upstream.

`/v1/responses` is translated to a chat request and its answer back (`runtime/gateway/responses.py`),
so the difference between the two columns is the translation's own cost. Measured in pairs: two
identical gateway processes of each kind serve at once, one chat and the other responses, and swap
roles every round, so both columns see the same background load at the same moments (one case
after the other, a loaded 2-core machine's drift moved a row by 0.1-0.3 ms between batches). The
server CPU per request is read from /proc (Linux only), apart from the load generator's.

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


async def run_together(cases: list[Case], *, total: int, concurrency: int) -> None:
    await asyncio.gather(*(run_batch(case, total=total, concurrency=concurrency) for case in cases))


if __name__ == "__main__":
    main()
