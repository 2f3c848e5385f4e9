"""The gateway's CPU per request with a canary split beside the same gateway without one (issue 23):
one gateway process with no canary, one splitting 90/10 on a sticky header (`stickyBy: header`,
a different session per request), one splitting 90/10 with no key (a draw per request). All three
call the same deterministic test upstream (serving both model names), with JSON chat requests of the
same size; the cases take turns in interleaved rounds at one concurrency, and the server CPU per
request is read from /proc (Linux only), apart from the load generator's.

The split's own cost is the difference between a split row and the first: one blake2b of the
sticky key and a draw per request, and the per-version counting (three Prometheus series and the
analysis window) on each model call.

    .venv/bin/python bench/canary.py [--requests 3000] [--concurrency 8] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from aistack.runtime.local.ports import free_port
from aistack.testing.processes import loadavg, start_gateway, start_server, stop_process

BODY = {"model": "demo-model", "max_tokens": 64,
        "messages": [{"role": "user", "content": "What does the gateway add to a request? [[say:"
                                                 + " ".join(["word"] * 24) + "]]"}]}


def config(upstream: str, canary: dict[str, Any] | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"name": "bench", "namespace": "default", "stage": "dev",
                           "configHash": "bench000bench000",
                           "model": {"publicName": "demo-model",
                                     "primary": {"baseUrl": upstream, "model": "test-model"}},
                           "orchestration": {"mode": "pipeline", "maxSteps": 1, "timeouts": {}}}
    if canary is not None:
        cfg["model"]["canary"] = {"upstream": {"baseUrl": upstream, "model": "canary-model"}, **canary}
    return cfg


def micro_us(n: int = 20000) -> tuple[float, float]:
    """In-process microseconds per request of the split's own work: choosing a version from a sticky
    key, and counting one call of a version (three Prometheus series and the analysis window)."""
    from aistack.api.gateway_config import CanaryConfig, Upstream
    from aistack.runtime.core.metrics import GatewayMetrics
    from aistack.runtime.gateway.canary import Split, VersionWindow
    from aistack.runtime.gateway.upstream import HttpPool, ModelClient

    split = Split(CanaryConfig(upstream=Upstream(base_url="http://x/v1", model="m"), weight=10,
                               sticky_by="header", sticky_header="X-Session-Id"))
    keys = [f"session-{i}" for i in range(n)]
    started = time.perf_counter()
    for key in keys:
        split.choose(key)
    choose = (time.perf_counter() - started) / n * 1e6
    client = ModelClient(primary=Upstream(base_url="http://x/v1", model="m"), fallback=None, http=HttpPool(),
                         metrics=GatewayMetrics(), version="stable", window=VersionWindow(300))
    started = time.perf_counter()
    for _ in range(n):
        client._observe(time.perf_counter(), ok=True)
    count = (time.perf_counter() - started) / n * 1e6
    return choose, count


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Case:
    name: str
    url: str
    pid: int
    header: str | None = None
    cpu_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    sent: int = 0


async def run_batch(case: Case, *, total: int, concurrency: int) -> None:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(latencies: list[float]) -> None:
            case.sent += 1
            headers = {case.header: f"session-{case.sent}"} if case.header else None
            started = time.perf_counter()
            try:
                resp = await client.post(case.url, json=BODY, headers=headers)
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
                await one(case.latencies)

        before = process_cpu_s(case.pid)
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        case.cpu_s += process_cpu_s(case.pid) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per case, over all rounds")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-canary-"))
    procs = []
    print(f"{os.cpu_count()} CPUs; load average at start: {loadavg()}", flush=True)
    choose, count = micro_us()
    print(f"in-process: choosing a version {choose:.2f} us, counting a call {count:.2f} us "
          f"(per request: one choice, one count)", flush=True)
    try:
        port = free_port()
        upstream_proc, upstream = start_server(
            [sys.executable, "-m", "aistack.testing.openai_server", "--port", str(port),
             "--model", "test-model", "--model", "canary-model"],
            port=port, log=folder / "upstream.log", name="test upstream", probe="/health")
        procs.append(upstream_proc)
        cases = []
        for name, canary, header in (
                ("no canary", None, None),
                ("canary 10%, sticky header",
                 {"weight": 10, "stickyBy": "header", "stickyHeader": "X-Session-Id"}, "X-Session-Id"),
                ("canary 10%, no key", {"weight": 10}, None)):
            proc, url = start_gateway(config(f"{upstream}/v1", canary), folder, name=f"gateway-{len(procs)}")
            procs.append(proc)
            cases.append(Case(name, f"{url}/v1/chat/completions", proc.pid, header))
        per_round = max(args.requests // args.rounds, 1)
        for _ in range(args.rounds):  # interleaved: drifting background load hits every case alike
            for case in cases:
                asyncio.run(run_batch(case, total=per_round, concurrency=args.concurrency))
        print(f"\n{per_round * args.rounds} JSON chat requests per case, concurrency {args.concurrency}; "
              f"load average at end: {loadavg()}")
        base = cases[0].cpu_s / max(len(cases[0].latencies), 1) * 1e3
        print(f"{'gateway':<28} {'CPU ms/req':>11} {'vs no canary':>13} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'errors':>7}")
        for case in cases:
            cpu = case.cpu_s / max(len(case.latencies), 1) * 1e3
            lat = sorted(case.latencies) or [0.0]
            print(f"{case.name:<28} {cpu:>11.3f} {cpu - base:>+13.3f} {statistics.median(lat) * 1e3:>8.2f} "
                  f"{lat[int(len(lat) * 0.99) - 1] * 1e3:>8.2f} {case.errors:>7}")
    finally:
        for proc in reversed(procs):
            stop_process(proc)


if __name__ == "__main__":
    main()
