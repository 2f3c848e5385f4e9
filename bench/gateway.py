"""Gateway overhead, side by side in one run: the same chat requests sent straight to the fake
upstream, through the aistack gateway (no rails; the same with several worker processes; fast
rails; fast rails + tracing to a real MLflow server), and through the LiteLLM proxy as the
peer.

Two questions, both asked in every run:

- **saturation** (upstream latency 0 ms, concurrency 1, 16, 64): the upstream answers at once,
  so at c=64 the upstream, every server and the load generator compete for the same cores and
  a closed loop's latency is just 64 / throughput: the throughput ratio and the server CPU per
  request are the numbers to read; "added latency" there is mostly CPU queueing.
- **the gateway's own cost** (upstream latency 50 and 200 ms, as a model never answers in 0 ms;
  c=64): the machine is not saturated, so added p50/p99 is what the gateway adds to a request.

Every server is its own process on loopback, all started first; the targets then take turns
in interleaved rounds at each level, so drifting background load hits all alike. The latency is
the test server's `[[sleep:S]]` marker in the prompt, so one upstream and one set of gateways
serve every latency. Prints one table per latency (with the load average before and after),
a side-by-side table at each concurrency, and in-process micro-costs of the fast rails and of
tracing on the request path. Linux only (server CPU from /proc).

    .venv/bin/python bench/gateway.py [--requests 400] [--levels 1,64] [--upstream-latency-ms 0,50,200]
                                      [--gateway-workers 2] [--litellm /tmp/litellm-venv/bin/litellm]

Ratios, not absolute numbers, are the point: the load generator shares the CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from aistack.runtime.local.ports import free_port
from aistack.testing.processes import loadavg
from aistack.testing.processes import stop_process as stop

BODY = {"model": "demo-model",
        "messages": [{"role": "user", "content": "What does the gateway add? Contact me at a@b.co"}],
        "max_tokens": 32}


UNFROZEN = "gateway (gc not frozen)"
UNFROZEN_ENTRY = ("import sys; import aistack.runtime.gateway.app as app; app.settle_heap = lambda: None; "
                  "from aistack.runtime.__main__ import main; main(sys.argv[1:])")
"""The gateway's own entry point with the heap never frozen, as it served before issue 18 item 10."""


@dataclass
class Result:
    target: str
    concurrency: int
    p50_ms: float
    p99_ms: float
    rps: float
    errors: int
    cpu_ms: float  # the server's own CPU per request (for "direct": the upstream's)
    latency_ms: int  # the simulated model latency


def start(cmd: list[str], *, health: str, env: dict[str, str] | None = None,
          timeout: float = 120) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE,
                            start_new_session=True)  # its own process group: stop() ends its children too
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:4]} exited: {proc.stderr.read().decode()[-1500:]}")
        try:
            if httpx.get(health, timeout=1).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"{cmd[:4]} did not become healthy")


async def load(url: str, *, model: str, concurrency: int, total: int, headers: dict[str, str],
               latency_s: float = 0.0,
               cpu: Callable[[], float] = lambda: 0.0) -> tuple[list[float], float, int, float]:
    """`total` requests from `concurrency` workers, after one warm-up call per worker (so the pool
    holds its connections): (latencies, elapsed s, errors, CPU s that `cpu()` counted meanwhile).

    `latency_s` asks the upstream to wait that long (its `[[sleep:S]]` marker). The workers then
    start spread over one such period, so requests arrive as a steady stream with `concurrency`
    in flight: started together, with a constant model latency they would stay in lockstep and
    every answer would reach the gateway in a burst of `concurrency`, measuring the burst's queue
    rather than a request's cost. aiohttp as the client (httpx's own pool costs several ms of CPU
    per request at c=64, which would steal CPU from the servers measured)."""
    import aiohttp

    suffix = f" [[sleep:{latency_s}]]" if latency_s else ""
    message = {**BODY["messages"][0], "content": BODY["messages"][0]["content"] + suffix}
    payload = json.dumps({**BODY, "model": model, "messages": [message]}).encode()
    hdrs = {"Content-Type": "application/json", **headers}
    latencies: list[float] = []
    errors = 0
    remaining = total
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def call() -> bool:
            async with session.post(url, data=payload, headers=hdrs) as resp:
                await resp.read()
                return resp.status == 200

        await asyncio.gather(*(call() for _ in range(concurrency)))

        async def worker(index: int) -> None:
            nonlocal errors, remaining
            await asyncio.sleep(index * latency_s / concurrency)
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                try:
                    ok = await call()
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        cpu0, started = cpu(), time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed, used = time.perf_counter() - started, cpu() - cpu0
    return latencies, elapsed, errors, used


def summarize(name: str, concurrency: int, lat: list[float], elapsed: float, errors: int, *, cpu_s: float,
              latency_ms: int) -> Result:
    lat = sorted(lat)
    return Result(name, concurrency, statistics.median(lat) * 1e3,
                  lat[max(int(len(lat) * 0.99) - 1, 0)] * 1e3,
                  len(lat) / elapsed, errors, cpu_s / len(lat) * 1e3, latency_ms)


def gateway_config(upstream: str, *, rails: bool, tracing: str | None) -> dict:
    cfg: dict = {"name": "bench", "namespace": "default", "stage": "dev", "configHash": "bench000bench000",
                 "model": {"publicName": "demo-model",
                           "primary": {"baseUrl": upstream, "model": "test-model"}},
                 "orchestration": {"mode": "pipeline", "maxSteps": 1, "timeouts": {}}}
    if rails:
        cfg["guardrails"] = {"engine": "inprocess", "rails": {
            "input": ["max_length", "jailbreak_heuristics", "pii_mask", "blocked_terms"],
            "output": ["pii_mask", "blocked_terms"], "blockedTerms": ["internal-only", "project x"]}}
    if tracing:
        cfg["tracing"] = {"trackingUri": tracing, "experiment": "bench-gateway", "queueSize": 1000}
    return cfg


def micro_costs() -> dict[str, float]:
    """Microseconds per call, in-process: fast rails (input + output) and tracing on the request path."""
    from aistack.api.gateway_config import TracingConfig
    from aistack.api.v1alpha1.guardrails import GuardrailsSpec
    from aistack.runtime.core.metrics import GatewayMetrics
    from aistack.runtime.guardrails.fast import FastRails
    from aistack.runtime.tracing import Tracer

    spec = GuardrailsSpec(input=["max_length", "jailbreak_heuristics", "pii_mask", "blocked_terms"],
                          output=["pii_mask", "blocked_terms"], blocked_terms=["internal-only", "project x"])
    fin, fout = FastRails(spec=spec, side="input"), FastRails(spec=spec, side="output")
    text = BODY["messages"][0]["content"]
    answer = "The gateway adds authentication, rails, retrieval and tracing around each call. " * 4

    def per_call(fn, n=2000) -> list[float]:
        samples = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            fn()
            samples.append((time.perf_counter_ns() - t0) / 1e3)
        return sorted(samples)

    rails = per_call(lambda: (fin.check(text), fout.check(answer)))
    tracer = Tracer(config=None, tags={"aistack.stack": "bench"}, metrics=GatewayMetrics())
    tracer.config = TracingConfig(tracking_uri="http://127.0.0.1:1", experiment="x", queue_size=10**6)
    tracer._queue = multiprocessing.get_context("spawn").Queue(maxsize=10**6)  # the real queue, no exporter

    def one_trace() -> None:
        trace = tracer.start(name="chat.completions", inputs={"question": text})
        for step in ("rails.input.fast", "prompt", "generation", "rails.output.fast"):
            with trace.span(step, "LLM") as span:
                span.outputs = {"ok": True}
        trace.finish(outputs={"answer": answer})
        tracer.submit(trace)

    traces = per_call(one_trace)
    tracer._queue.cancel_join_thread()  # nobody reads it: do not wait at exit to flush it
    return {"fast_rails_p50_us": statistics.median(rails), "fast_rails_p99_us": rails[int(len(rails) * 0.99)],
            "tracing_p50_us": statistics.median(traces), "tracing_p99_us": traces[int(len(traces) * 0.99)]}


def _exported(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("aistack_gateway_traces_exported_total"))


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants (workers, the trace
    exporter), from /proc: what each server really spends, apart from the load generator."""
    total = 0.0
    stack = [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


@dataclass
class Target:
    name: str
    url: str
    model: str
    headers: dict[str, str]
    proc: subprocess.Popen


def measure(targets: list[Target], *, latency_ms: int, levels: list[int], requests: int,
            rounds: int) -> list[Result]:
    """Every target at every level, in interleaved rounds; upstream latency via the test server's
    `[[sleep:S]]` marker, so one upstream (and one set of gateways) serves every latency."""
    results: list[Result] = []
    per_round = max(requests // rounds, 1)
    for c in levels:
        samples = {t.name: ([], 0.0, 0, 0.0) for t in targets}
        for _ in range(rounds):
            for t in targets:
                lat, took, errors, used = asyncio.run(load(
                    t.url, model=t.model, concurrency=c, total=per_round, headers=t.headers,
                    latency_s=latency_ms / 1000,
                    cpu=lambda pid=t.proc.pid: process_cpu_s(pid)))
                lats, elapsed, errs, cpu = samples[t.name]
                samples[t.name] = (lats + lat, elapsed + took, errs + errors, cpu + used)
        for t in targets:
            lat, elapsed, errors, cpu = samples[t.name]
            r = summarize(t.name, c, lat, elapsed, errors, cpu_s=cpu, latency_ms=latency_ms)
            results.append(r)
            print(f"  upstream +{latency_ms:>3} ms  {t.name:<24} c={c:<3} p50={r.p50_ms:8.2f} ms  "
                  f"p99={r.p99_ms:8.2f} ms"
                  f"  {r.rps:7.0f} rps  cpu {r.cpu_ms:.3f} ms/req  errors={errors}", flush=True)
    return results


def print_table(results: list[Result], *, latency_ms: int, loads: tuple[str, str]) -> None:
    direct = {r.concurrency: r for r in results if r.target == "direct"}
    litellm = {r.concurrency: r for r in results if r.target == "litellm proxy"}
    print(f"\n### upstream latency {latency_ms} ms (load average before: {loads[0]}; after: {loads[1]})\n")
    print("| target | c | p50 ms | p99 ms | added p50 ms | added p99 ms | rps | throughput vs direct "
          "| server CPU ms/request | added p50 vs LiteLLM |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        d = direct[r.concurrency]
        add50, add99 = r.p50_ms - d.p50_ms, r.p99_ms - d.p99_ms
        vs = ""
        if r.target.startswith("gateway") and r.concurrency in litellm:
            peer = litellm[r.concurrency].p50_ms - d.p50_ms
            vs = f"{add50 / peer:.2f}x" if peer > 0 else "n/a"
        print(f"| {r.target} | {r.concurrency} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
              f"{add50:+.2f} | {add99:+.2f} | "
              f"{r.rps:.0f} | {r.rps / d.rps:.2f}x | {r.cpu_ms:.3f} | {vs} |")


def print_side_by_side(results: list[Result], *, latencies: list[int], c: int) -> None:
    """At concurrency `c`: what each target adds with each upstream latency, in one table."""
    rows = [r for r in results if r.concurrency == c]
    if not rows:
        return
    names = list(dict.fromkeys(r.target for r in rows))
    by = {(r.target, r.latency_ms): r for r in rows}
    print(f"\n### side by side at c={c}: added p50 / p99 ms (throughput vs direct)\n")
    print("| target | " + " | ".join(f"upstream {ms} ms" for ms in latencies) + " |")
    print("|---|" + "---|" * len(latencies))
    for name in names:
        cells = []
        for ms in latencies:
            r, d = by.get((name, ms)), by.get(("direct", ms))
            cells.append("" if r is None or d is None else
                         f"{r.p50_ms - d.p50_ms:+.2f} / {r.p99_ms - d.p99_ms:+.2f} ({r.rps / d.rps:.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")


def print_gc_freeze(results: list[Result], *, loads: list[tuple[str, str]]) -> None:
    """The gateway with its heap frozen after start-up (as it serves) beside the same gateway
    never frozen (as before issue 18 item 10), at each concurrency with the zero-latency upstream:
    a full collection's walk of the long-lived heap shows in the p99. Target: +15 ms at c=16."""
    by = {(r.target, r.concurrency, r.latency_ms): r for r in results}
    levels = sorted({r.concurrency for r in results if r.target == UNFROZEN})
    if not levels:
        return
    print("\n### gc.freeze after start-up: added p99 ms over direct, never frozen -> frozen "
          f"(load averages {'; '.join(f'{a} -> {b}' for a, b in loads)})\n")
    print("| upstream | c | added p50 ms: not frozen / frozen | added p99 ms: not frozen / frozen |")
    print("|---|---|---|---|")
    for ms in sorted({r.latency_ms for r in results}):
        for c in levels:
            d, old, new = (by.get((name, c, ms)) for name in ("direct", UNFROZEN, "gateway"))
            if d is None or old is None or new is None:
                continue
            print(f"| {ms} ms | {c} | {old.p50_ms - d.p50_ms:+.2f} / {new.p50_ms - d.p50_ms:+.2f} | "
                  f"{old.p99_ms - d.p99_ms:+.2f} / {new.p99_ms - d.p99_ms:+.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=600, help="requests per target and concurrency level")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds (targets alternate each round)")
    parser.add_argument("--levels", default="1,16,64",
                        help="concurrency levels with the zero-latency upstream")
    parser.add_argument("--upstream-latency-ms", default="0,50,200",
                        help="model latencies to simulate (0 = the upstream answers at once: saturation)")
    parser.add_argument("--latency-levels", default="64",
                        help="concurrency levels with a non-zero upstream latency")
    parser.add_argument("--gateway-workers", type=int, default=2,
                        help="also run the plain gateway with this many worker processes (0 or 1: skip)")
    parser.add_argument("--litellm", default=shutil.which("litellm") or "/tmp/litellm-venv/bin/litellm",
                        help="the litellm CLI (proxy); skipped when missing")
    parser.add_argument("--no-mlflow", action="store_true",
                        help="skip the tracing variant and its MLflow server")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below on kill
    levels = [int(x) for x in args.levels.split(",")]
    latency_levels = [int(x) for x in args.latency_levels.split(",")]
    latencies = [int(x) for x in args.upstream_latency_ms.split(",")]
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    procs: list[subprocess.Popen] = []
    targets: list[Target] = []
    results: list[Result] = []
    print(f"{os.cpu_count()} CPUs; load average at start: {loadavg()}", flush=True)
    try:
        up_port = free_port()
        upstream = f"http://127.0.0.1:{up_port}/v1"
        procs.append(start([py, "-m", "aistack.testing.openai_server", "--port", str(up_port)],
                           health=f"http://127.0.0.1:{up_port}/health"))
        targets.append(Target("direct", f"{upstream}/chat/completions", "test-model", {}, procs[-1]))
        tracking = None
        if not args.no_mlflow:
            ml_port = free_port()
            procs.append(start([py, "-m", "mlflow", "server", "--backend-store-uri",
                                f"sqlite:///{tmp}/mlflow.db",
                                "--artifacts-destination", str(tmp / "artifacts"), "--host", "127.0.0.1",
                                "--port", str(ml_port), "--workers", "1"],
                               health=f"http://127.0.0.1:{ml_port}/health", timeout=240))
            tracking = f"http://127.0.0.1:{ml_port}"
        # (name, rails, tracing URI, workers, heap frozen): the unfrozen twin is the gateway as it
        # ran before issue 18 item 10, beside it in every round
        variants = [("gateway", False, None, 1, True), (UNFROZEN, False, None, 1, False)]
        if args.gateway_workers > 1:
            variants.append((f"gateway ({args.gateway_workers} workers)", False, None, args.gateway_workers,
                             True))
        variants.append(("gateway+fast rails", True, None, 1, True))
        if tracking:
            variants.append(("gateway+rails+tracing", True, tracking, 1, True))
        traced_port = None
        for name, rails, trace_uri, workers, frozen in variants:
            path = tmp / f"{len(targets)}.yaml"
            path.write_text(yaml.safe_dump(gateway_config(upstream, rails=rails, tracing=trace_uri)))
            port = free_port()
            entry = ["-m", "aistack.runtime"] if frozen else ["-c", UNFROZEN_ENTRY]
            procs.append(start([py, *entry, "--host", "127.0.0.1", "--port", str(port),
                                "--config", str(path), "--workers", str(workers)],
                               health=f"http://127.0.0.1:{port}/healthz"))
            targets.append(Target(name, f"http://127.0.0.1:{port}/v1/chat/completions", "demo-model", {},
                                  procs[-1]))
            if trace_uri:
                traced_port = port
        if Path(args.litellm).exists():
            cfg = {"model_list": [{"model_name": "demo-model", "litellm_params": {
                "model": "openai/test-model", "api_base": upstream, "api_key": "unused"}}]}
            path = tmp / "litellm.yaml"
            path.write_text(yaml.safe_dump(cfg))
            port = free_port()
            master_key = f"sk-bench-{secrets.token_hex(16)}"  # LiteLLM refuses to start without one
            procs.append(start([args.litellm, "--config", str(path), "--host", "127.0.0.1", "--port",
                                str(port),
                                "--num_workers", "1"], health=f"http://127.0.0.1:{port}/health/liveliness",
                               env={"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                                    "LITELLM_MASTER_KEY": master_key}, timeout=240))
            targets.append(Target("litellm proxy", f"http://127.0.0.1:{port}/v1/chat/completions",
                                  "demo-model",
                                  {"Authorization": f"Bearer {master_key}"}, procs[-1]))
        else:
            print(f"litellm CLI not found at {args.litellm}: peer skipped", flush=True)
        for t in targets:  # warm every path once (with several workers, each of them)
            asyncio.run(load(t.url, model=t.model, concurrency=8, total=40, headers=t.headers))
        if traced_port is not None:  # the exporter process has imported MLflow and exported once
            deadline = time.monotonic() + 180
            while _exported(traced_port) < 1 and time.monotonic() < deadline:
                time.sleep(1)
        tables = []
        for ms in latencies:
            before = loadavg()
            block = measure(targets, latency_ms=ms, levels=levels if ms == 0 else latency_levels,
                            requests=args.requests, rounds=args.rounds)
            tables.append((ms, block, (before, loadavg())))
            results += block
        if traced_port is not None:
            text = httpx.get(f"http://127.0.0.1:{traced_port}/metrics").text
            print("   tracing:", "; ".join(line for line in text.splitlines() if line.startswith(
                ("aistack_gateway_traces_dropped_total", "aistack_gateway_traces_exported_total"))),
                  flush=True)
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)

    for ms, block, loads in tables:
        print_table(block, latency_ms=ms, loads=loads)
    if len(latencies) > 1:
        for c in sorted({r.concurrency for r in results}):
            print_side_by_side(results, latencies=latencies, c=c)
    print_gc_freeze(results, loads=[loads for _, _, loads in tables])
    costs = micro_costs()
    print("\nin-process costs on the request path (microseconds per request):")
    for k, v in costs.items():
        print(f"  {k}: {v:.1f}")


if __name__ == "__main__":
    main()
