"""Gateway overhead, side by side in one run: the same chat requests sent straight to the fake
upstream, through the aistack gateway (no rails; fast rails; fast rails + tracing to a real
MLflow server), and through the LiteLLM proxy as the peer, at concurrency 1, 16 and 64.

Every server is its own process on loopback, all started first; the targets then take turns
in interleaved rounds at each concurrency level, so drifting background load hits all alike.
Prints p50/p99 latency, added latency against the direct path, throughput ratio, and
in-process micro-costs of the fast rails and of tracing on the request path.

    .venv/bin/python bench/gateway.py [--requests 400] [--litellm /tmp/litellm-venv/bin/litellm]

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
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from aistack.runtime.testing.openai_server import free_port

BODY = {"model": "demo-model", "messages": [{"role": "user", "content": "What does the gateway add? Contact me at a@b.co"}],
        "max_tokens": 32}


@dataclass
class Result:
    target: str
    concurrency: int
    p50_ms: float
    p99_ms: float
    rps: float
    errors: int


def start(cmd: list[str], *, health: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
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


def stop(proc: subprocess.Popen) -> None:
    """End the server and whatever it started (mlflow's huey consumers ignore SIGTERM)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass


async def load(url: str, *, model: str, concurrency: int, total: int, headers: dict[str, str]) -> tuple[list[float], float, int]:
    """`total` requests from `concurrency` workers; aiohttp as the client (httpx's own pool costs
    several ms of CPU per request at c=64, which would steal CPU from the servers measured)."""
    import aiohttp

    payload = json.dumps({**BODY, "model": model}).encode()
    hdrs = {"Content-Type": "application/json", **headers}
    latencies: list[float] = []
    errors = 0
    remaining = total
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def call() -> bool:
            async with session.post(url, data=payload, headers=hdrs) as resp:
                await resp.read()
                return resp.status == 200

        for _ in range(min(20, total)):  # warm the pools
            await call()

        async def worker() -> None:
            nonlocal errors, remaining
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                try:
                    ok = await call()
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return latencies, total / elapsed, errors


def summarize(name: str, concurrency: int, lat: list[float], elapsed: float, errors: int) -> Result:
    lat = sorted(lat)
    return Result(name, concurrency, statistics.median(lat) * 1e3, lat[max(int(len(lat) * 0.99) - 1, 0)] * 1e3,
                  len(lat) / elapsed, errors)


def gateway_config(upstream: str, *, rails: bool, tracing: str | None) -> dict:
    cfg: dict = {"name": "bench", "namespace": "default", "stage": "dev", "configHash": "bench000bench000",
                 "model": {"publicName": "demo-model", "primary": {"baseUrl": upstream, "model": "test-model"}},
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
    from aistack.runtime.gateway.metrics import GatewayMetrics
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=600, help="requests per target and concurrency level")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (targets alternate each round)")
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--litellm", default=shutil.which("litellm") or "/tmp/litellm-venv/bin/litellm",
                        help="the litellm CLI (proxy); skipped when missing")
    parser.add_argument("--no-mlflow", action="store_true", help="skip the tracing variant and its MLflow server")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below on kill
    levels = [int(x) for x in args.levels.split(",")]
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    procs: list[subprocess.Popen] = []
    targets: list[tuple[str, str, str, dict[str, str]]] = []  # name, url, model, headers
    try:
        up_port = free_port()
        upstream = f"http://127.0.0.1:{up_port}/v1"
        procs.append(start([py, "-m", "aistack.runtime.testing.openai_server", "--port", str(up_port)],
                           health=f"http://127.0.0.1:{up_port}/health"))
        targets.append(("direct", f"{upstream}/chat/completions", "test-model", {}))
        tracking = None
        if not args.no_mlflow:
            ml_port = free_port()
            procs.append(start([py, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
                                "--artifacts-destination", str(tmp / "artifacts"), "--host", "127.0.0.1",
                                "--port", str(ml_port), "--workers", "1"],
                               health=f"http://127.0.0.1:{ml_port}/health", timeout=240))
            tracking = f"http://127.0.0.1:{ml_port}"
        variants = [("gateway", False, None), ("gateway+fast rails", True, None)]
        if tracking:
            variants.append(("gateway+rails+tracing", True, tracking))
        traced_port = None
        for name, rails, trace_uri in variants:
            path = tmp / f"{len(targets)}.yaml"
            path.write_text(yaml.safe_dump(gateway_config(upstream, rails=rails, tracing=trace_uri)))
            port = free_port()
            procs.append(start([py, "-m", "aistack.runtime", "--host", "127.0.0.1", "--port", str(port),
                                "--config", str(path)], health=f"http://127.0.0.1:{port}/healthz"))
            targets.append((name, f"http://127.0.0.1:{port}/v1/chat/completions", "demo-model", {}))
            if trace_uri:
                traced_port = port
        if Path(args.litellm).exists():
            cfg = {"model_list": [{"model_name": "demo-model", "litellm_params": {
                "model": "openai/test-model", "api_base": upstream, "api_key": "unused"}}]}
            path = tmp / "litellm.yaml"
            path.write_text(yaml.safe_dump(cfg))
            port = free_port()
            master_key = f"sk-bench-{secrets.token_hex(16)}"  # LiteLLM refuses to start without one
            procs.append(start([args.litellm, "--config", str(path), "--host", "127.0.0.1", "--port", str(port),
                                "--num_workers", "1"], health=f"http://127.0.0.1:{port}/health/liveliness",
                               env={"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                                    "LITELLM_MASTER_KEY": master_key}, timeout=240))
            targets.append(("litellm proxy", f"http://127.0.0.1:{port}/v1/chat/completions", "demo-model",
                            {"Authorization": f"Bearer {master_key}"}))
        else:
            print(f"litellm CLI not found at {args.litellm}: peer skipped", flush=True)
        for name, url, model, headers in targets:  # warm every path once
            asyncio.run(load(url, model=model, concurrency=1, total=20, headers=headers))
        if traced_port is not None:  # the exporter process has imported MLflow and exported once
            deadline = time.monotonic() + 180
            while _exported(traced_port) < 1 and time.monotonic() < deadline:
                time.sleep(1)
        results: list[Result] = []
        per_round = max(args.requests // args.rounds, 1)
        for c in levels:
            samples: dict[str, tuple[list[float], float, int]] = {t[0]: ([], 0.0, 0) for t in targets}
            for _ in range(args.rounds):
                for name, url, model, headers in targets:
                    t0 = time.perf_counter()
                    lat, _, errors = asyncio.run(load(url, model=model, concurrency=c, total=per_round, headers=headers))
                    acc = samples[name]
                    samples[name] = (acc[0] + lat, acc[1] + time.perf_counter() - t0, acc[2] + errors)
            for name, _, _, _ in targets:
                lat, elapsed, errors = samples[name]
                r = summarize(name, c, lat, elapsed, errors)
                results.append(r)
                print(f"  {name:<22} c={c:<3} p50={r.p50_ms:7.2f} ms  p99={r.p99_ms:7.2f} ms  {r.rps:7.0f} rps"
                      f"  errors={errors}", flush=True)
        if traced_port is not None:
            text = httpx.get(f"http://127.0.0.1:{traced_port}/metrics").text
            print("   tracing:", "; ".join(line for line in text.splitlines() if line.startswith(
                ("aistack_gateway_traces_dropped_total", "aistack_gateway_traces_exported_total"))), flush=True)
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)

    direct = {r.concurrency: r for r in results if r.target == "direct"}
    litellm = {r.concurrency: r for r in results if r.target == "litellm proxy"}
    print("\n| target | c | p50 ms | p99 ms | added p50 ms | added p99 ms | throughput vs direct | added p50 vs LiteLLM |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        d = direct[r.concurrency]
        add50, add99 = r.p50_ms - d.p50_ms, r.p99_ms - d.p99_ms
        vs = ""
        if r.target.startswith("gateway") and r.concurrency in litellm:
            peer = litellm[r.concurrency].p50_ms - d.p50_ms
            vs = f"{add50 / peer:.2f}x" if peer > 0 else "n/a"
        print(f"| {r.target} | {r.concurrency} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {add50:+.2f} | {add99:+.2f} | "
              f"{r.rps / d.rps:.2f}x | {vs} |")
    costs = micro_costs()
    print("\nin-process costs on the request path (microseconds per request):")
    for k, v in costs.items():
        print(f"  {k}: {v:.1f}")


if __name__ == "__main__":
    main()
