"""The engine benchmark (issue 15 item 6): the offline model on the real vLLM engine, as `aistack up`
starts it, measured side by side in one run.

- **engine start**: from the engine process's start to `/health` 200 (load average beside it), and
  the memory of its process tree (RSS and PSS, psutil) after warm-up;
- **direct vs gateway**: streamed chat completions straight to vLLM and through a real gateway
  process (`python -m aistack.runtime`: pipeline mode, no rails, no retrieval, no tracing) routed
  to the same engine, at each concurrency level, in interleaved rounds (direct, gateway, direct,
  gateway) so drifting background load hits both: time to first token (the first streamed content
  event), latency, tokens/s from `usage.completion_tokens`; and the gateway's own cost to the
  first token at c=1 from many back-to-back rounds of short requests (one to each path, and one
  through bench/relay.py, a bare streaming relay), whose median difference takes the machine's
  drift out and splits the gateway's cost into one HTTP hop's (the relay's) and its own work's;
- **old path vs vLLM**: the same requests to the transformers path the offline model had before the
  engine (`aistack.runtime.local.offline_model`, in this process), after the engine has stopped.

Every request is greedy (temperature 0) with a fixed `max_tokens`, plus vLLM's `ignore_eos` where
the gateway accepts it, so both paths generate the same tokens; the tables show the tokens per
request of each. The targets of issue 15 are checked at the end. Linux only (psutil's PSS).

    .venv/bin/python bench/engine.py [--quick] [--levels 1,8] [--requests 16] [--rounds 2]
                                     [--max-tokens 48] [--ttft-pairs 40] [--no-old-path]

A full run takes ~4-5 minutes on 2 idle cores; `--quick` is a smoke run (~2 minutes). Ratios
measured in one run are the point: the load generator and the gateway share the engine's cores
(on 2 cores vLLM's threads take both while they compute, so the gateway waits for a core; on a
loaded machine its added TTFT swings by +-10 ms from one batch of requests to the next).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from aistack.api.manifests import load_stack
from aistack.runtime.engine.locate import Build, EngineLocation, detect_build
from aistack.runtime.engine.server import EngineServer, local_command, local_environ
from aistack.runtime.local.engine_model import (EnginePlan, EngineUnavailable, launch, plan, usable_engine,
                                                wait_ready)
from aistack.runtime.local.offline_model import OFFLINE_MODEL_NAME
from aistack.runtime.local.offline_weights import is_prepared, weights_folder
from aistack.runtime.local.ports import free_port
from aistack.testing import processes
from aistack.testing.chat_load import LoadResult, StreamResult, merge, percentile, run_load, stream_chat
from aistack.testing.gateway import base_config
from aistack.testing.processes import loadavg, start_server, stop_process

REPO = Path(__file__).resolve().parent.parent
DEMO_STACK = REPO / "examples" / "rag.yaml"
"""What `make demo` runs: its model is not served here, so `aistack up` serves the offline model."""
PROMPT = "Write a detailed, long story about a lighthouse keeper who finds a message in a bottle."
TTFT_MAX_TOKENS = 2
TARGETS = {"gateway_ttft_ms": 1.0, "gateway_throughput_loss": 0.05, "stream_tok_s": 15.0,
           "aggregate_tok_s": 80.0, "ready_s": 45.0}
"""Issue 15's: the gateway adds <= 1 ms p50 TTFT at c=1 and costs <= 5% of direct throughput at c=8;
>= 15 tok/s on one stream, >= 80 tok/s in aggregate at c=8; ready <= 45 s on an idle machine."""


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB of a process and all its descendants: RSS counts the pages the engine's
    processes share once per process, PSS splits them, so PSS is what the tree really holds."""
    rss = pss = 0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", 0)
    return rss / 2**20, pss / 2**20


def chat_body(*, max_tokens: int, ignore_eos: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": OFFLINE_MODEL_NAME, "messages": [{"role": "user", "content": PROMPT}],
                            "temperature": 0, "max_tokens": max_tokens}
    if ignore_eos:
        body["ignore_eos"] = True
    return body


def start_gateway(engine_url: str, folder: Path,
                  prefix: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """The gateway routed to the engine (`prefix` as for processes.start_gateway())."""
    config = base_config(f"{engine_url}/v1", model={
        "publicName": OFFLINE_MODEL_NAME, "primary": {"model": OFFLINE_MODEL_NAME, "timeoutSeconds": 300}})
    return processes.start_gateway(config, folder, prefix=prefix)


def gateway_takes_ignore_eos(gateway: str) -> tuple[bool, str]:
    """Whether the gateway passes vLLM's `ignore_eos` on (it refuses parameters it does not know)."""
    reply = httpx.post(f"{gateway}/v1/chat/completions", timeout=120,
                       json=chat_body(max_tokens=1, ignore_eos=True))
    return reply.status_code == 200, f"{reply.status_code}: {reply.text[:160]}"


@dataclass(frozen=True)
class Target:
    name: str
    url: str


def per_round(requests: int, *, concurrency: int, rounds: int) -> int:
    """Requests in one round: at least 4 full waves of `concurrency` per level, split over the
    rounds, each round whole waves (a closed loop's tail of fewer requests would lower throughput)."""
    total = max(requests, 4 * concurrency)
    waves = math.ceil(total / rounds / concurrency)
    return waves * concurrency


def interleaved(targets: Sequence[Target], *, body: dict[str, Any], concurrency: int, requests: int,
                rounds: int) -> dict[str, LoadResult]:
    loads: dict[str, list[LoadResult]] = {t.name: [] for t in targets}
    n = per_round(requests, concurrency=concurrency, rounds=rounds)
    for _ in range(rounds):
        for t in targets:
            load = asyncio.run(run_load(t.url, body=body, concurrency=concurrency, requests=n))
            loads[t.name].append(load)
            print(f"  {t.name:<8} c={concurrency:<2} {len(load.ok)}/{len(load.results)} ok  "
                  f"TTFT p50 {load.ttft_ms(0.5):7.1f} ms  {load.tokens_per_s:6.1f} tok/s  load {loadavg()}",
                  flush=True)
    return {name: merge(parts) for name, parts in loads.items()}


@dataclass(frozen=True)
class PairedTtft:
    direct: LoadResult
    gateway: LoadResult
    differences_ms: list[float]
    """Gateway minus direct, one per pair of back-to-back requests."""
    relay: LoadResult | None = None
    """The bare relay (bench/relay.py), where it was timed in the same rounds."""
    relay_ms: list[float] = field(default_factory=list)
    """Relay minus direct, per round: what one Python HTTP hop costs on this machine."""
    own_ms: list[float] = field(default_factory=list)
    """Gateway minus relay, per round: the gateway's own work on top of the hop."""


async def paired_ttft(direct: str, gateway: str, *, body: dict[str, Any], pairs: int,
                      relay: str | None = None) -> PairedTtft:
    """Time to first token at c=1, one request to each path back to back (who goes first rotates),
    over kept-alive connections: a round shares the machine's load at that moment, so the median of
    the rounds' differences is the gateway's cost with the drift taken out, and short answers make
    many rounds cheap (the first token does not depend on max_tokens). With `relay`, a bare relay
    to the same engine takes part in every round, splitting the gateway's cost into the hop's and
    its own."""
    urls = {"direct": direct, "gateway": gateway, **({"relay": relay} if relay else {})}
    results: dict[str, list[StreamResult]] = {name: [] for name in urls}
    differences: list[float] = []
    relay_ms: list[float] = []
    own_ms: list[float] = []
    names = list(urls)
    async with contextlib.AsyncExitStack() as stack:
        clients = {name: await stack.enter_async_context(httpx.AsyncClient(timeout=120)) for name in urls}
        for name in urls:  # connections open before the first round
            await stream_chat(clients[name], urls[name], body)
        started = time.perf_counter()
        for i in range(pairs):
            got = {}
            for name in names[i % len(names):] + names[:i % len(names)]:
                got[name] = await stream_chat(clients[name], urls[name], body)
                results[name].append(got[name])
            ttft = {name: r.ttft_s * 1e3 for name, r in got.items() if r.error is None}
            if "direct" in ttft and "gateway" in ttft:
                differences.append(ttft["gateway"] - ttft["direct"])
            if "relay" in ttft and "direct" in ttft:
                relay_ms.append(ttft["relay"] - ttft["direct"])
            if "relay" in ttft and "gateway" in ttft:
                own_ms.append(ttft["gateway"] - ttft["relay"])
        elapsed = time.perf_counter() - started
    share = elapsed / len(urls)
    return PairedTtft(direct=LoadResult(1, results["direct"], share),
                      gateway=LoadResult(1, results["gateway"], share), differences_ms=differences,
                      relay=LoadResult(1, results["relay"], share) if relay else None,
                      relay_ms=relay_ms, own_ms=own_ms)


def start_relay(engine_url: str, folder: Path,
                prefix: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """bench/relay.py routed to the engine, in its own process group (`prefix` as for the gateway)."""
    port = free_port()
    command = [*prefix, sys.executable, str(Path(__file__).with_name("relay.py")), "--port", str(port),
               "--upstream", engine_url]
    return start_server(command, port=port, log=folder / "relay.log", name="relay", probe="/",
                        any_answer=True, timeout_s=60)  # any answer (404) means it listens


def row(name: str, r: LoadResult, base: LoadResult | None) -> str:
    per = r.tokens / len(r.ok) if r.ok else 0
    added = f"{r.ttft_ms(0.5) - base.ttft_ms(0.5):+.2f}" if base else ""
    ratio = f"{r.tokens_per_s / base.tokens_per_s:.3f}x" if base and base.tokens_per_s else ""
    errors = f" ({r.errors[0][:60]})" if r.errors else ""
    return (f"| {name} | {r.concurrency} | {len(r.results)} | {len(r.errors)}{errors} | {per:.1f} | "
            f"{r.ttft_ms(0.5):.2f} | {r.ttft_ms(0.9):.2f} | {added} | {r.latency_ms(0.5):.0f} | "
            f"{r.stream_tokens_per_s():.1f} | {r.tokens_per_s:.1f} | {ratio} |")


HEADER = ("| path | c | requests | errors | tokens/request | TTFT p50 ms | TTFT p90 ms | added TTFT p50 ms "
          "| latency p50 ms | tok/s per stream | tok/s aggregate | throughput vs direct |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def old_path(levels: Sequence[int], *, body: dict[str, Any], requests: int) -> dict[int, LoadResult]:
    """The transformers path, served in this process as `aistack up --engine transformers` does;
    it answers one request at a time, so a level gets one wave."""
    from aistack.runtime.local.offline_model import OfflineModel, offline_app
    from aistack.testing.openai_server import serve_in_thread

    started = time.monotonic()
    model = OfflineModel()
    print(f"  transformers path loaded in {time.monotonic() - started:.0f} s", flush=True)
    out: dict[int, LoadResult] = {}
    with serve_in_thread(offline_app(model)) as port:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        asyncio.run(run_load(url, body=body, concurrency=1, requests=1))  # its first generation is slower
        for c in levels:
            out[c] = asyncio.run(run_load(url, body=body, concurrency=c, requests=max(requests, c)))
            r = out[c]
            print(f"  old path c={c:<2} {len(r.ok)}/{len(r.results)} ok  {r.tokens_per_s:6.1f} tok/s  "
                  f"load {loadavg()}", flush=True)
    return out


def verdict(value: float, goal: float, *, at_most: bool) -> str:
    if math.isnan(value):
        return "not measured"
    return "met" if (value <= goal if at_most else value >= goal) else "NOT met"


@dataclass
class Run:
    """Everything one run measured, with the load average before and after each part."""

    ready_s: float = math.nan
    start_loads: tuple[str, str] = ("", "")
    rss_mib: float = math.nan
    pss_mib: float = math.nan
    processes: int = 0
    ignore_eos: bool = False
    ttft: PairedTtft | None = None
    ttft_loads: tuple[str, str] = ("", "")
    isolated: PairedTtft | None = None
    """The same pairs with the engine on one core and the gateway and the client on another."""
    isolated_loads: tuple[str, str] = ("", "")
    levels: dict[int, tuple[dict[str, LoadResult], tuple[str, str]]] = field(default_factory=dict)
    old: dict[int, LoadResult] = field(default_factory=dict)
    old_loads: tuple[str, str] = ("", "")

    def errors(self) -> list[str]:
        loads = [r for results, _ in self.levels.values() for r in results.values()] + list(self.old.values())
        for pairs in (self.ttft, self.isolated):
            if pairs is not None:
                loads += [pairs.direct, pairs.gateway] + ([pairs.relay] if pairs.relay else [])
        return [e for r in loads for e in r.errors]


def measure(args: argparse.Namespace, run: Run, *, engine: EngineLocation, build: Build, chosen: EnginePlan,
            folder: Path) -> None:
    """Start the engine and a gateway, measure, stop both; then the old path."""
    server: EngineServer | None = None
    gateway: subprocess.Popen[bytes] | None = None
    relay: subprocess.Popen[bytes] | None = None
    try:
        before, started = loadavg(), time.monotonic()
        server = launch(engine, build, chosen, log=folder / "engine.log")
        asyncio.run(wait_ready(server, timeout_s=600))
        run.ready_s, run.start_loads = time.monotonic() - started, (before, loadavg())
        print(f"engine ready in {run.ready_s:.1f} s (load average before: {before})", flush=True)
        gateway, gateway_url = start_gateway(server.base_url, folder)
        relay, relay_url = start_relay(server.base_url, folder)
        run.ignore_eos, answer = gateway_takes_ignore_eos(gateway_url)
        said = "passes ignore_eos on" if run.ignore_eos else f"refuses ignore_eos ({answer})"
        print(f"the gateway {said}: both paths run {'with' if run.ignore_eos else 'without'} it", flush=True)
        body = chat_body(max_tokens=args.max_tokens, ignore_eos=run.ignore_eos)
        targets = [Target("direct", f"{server.base_url}/v1/chat/completions"),
                   Target("gateway", f"{gateway_url}/v1/chat/completions")]
        for t in targets:  # both paths warmed at the highest level
            asyncio.run(run_load(t.url, body=body, concurrency=max(args.levels), requests=max(args.levels)))
        run.rss_mib, run.pss_mib = memory_mib(server.process.pid)
        run.processes = len(psutil.Process(server.process.pid).children(recursive=True)) + 1
        print(f"engine memory after warm-up: RSS {run.rss_mib:.0f} MiB, PSS {run.pss_mib:.0f} MiB "
              f"({run.processes} processes)", flush=True)
        before = loadavg()
        run.ttft = asyncio.run(paired_ttft(targets[0].url, targets[1].url, pairs=args.ttft_pairs,
                                           body={**body, "max_tokens": TTFT_MAX_TOKENS},
                                           relay=f"{relay_url}/v1/chat/completions"))
        run.ttft_loads = (before, loadavg())
        print(f"  TTFT pairs: {len(run.ttft.differences_ms)}, gateway minus direct p50 "
              f"{percentile(run.ttft.differences_ms, 0.5):+.2f} ms", flush=True)
        for c in args.levels:
            before = loadavg()
            results = interleaved(targets, body=body, concurrency=c, requests=args.requests,
                                  rounds=args.rounds)
            run.levels[c] = (results, (before, loadavg()))
    finally:
        for proc in (gateway, relay):
            if proc is not None:
                stop_process(proc)
        if server is not None:
            server.stop()
    if args.isolated and (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        before = loadavg()
        run.isolated = isolated_ttft(args, engine=engine, build=build, chosen=chosen, folder=folder,
                                     body={**body, "max_tokens": TTFT_MAX_TOKENS})
        run.isolated_loads = (before, loadavg())
        print(f"  TTFT pairs, engine on its own core: gateway minus direct p50 "
              f"{percentile(run.isolated.differences_ms, 0.5):+.2f} ms", flush=True)
    if not args.no_old_path:  # after the engine has stopped: the cores are the old path's alone
        before = loadavg()
        run.old = old_path(args.levels, body=body, requests=args.old_requests)
        run.old_loads = (before, loadavg())


ENGINE_CORE, GATEWAY_CORE = 1, 0


def isolated_ttft(args: argparse.Namespace, *, engine: EngineLocation, build: Build, chosen: EnginePlan,
                  folder: Path, body: dict[str, Any]) -> PairedTtft:
    """The TTFT pairs again with a second engine whose every process and its one compute thread stay
    on core 1, and the gateway and this client on core 0: as in a cluster, where vLLM computes on
    its own GPU and the gateway runs on CPUs nobody else spins on. On 2 shared cores vLLM's
    compute threads hold both cores while they work, so the gateway's turn on a core (and with it
    the pair's difference) swings by several ms either way, which hides a 1 ms budget."""
    command = ["taskset", "-c", str(ENGINE_CORE),
               *local_command(engine, chosen.model, build=build, host="127.0.0.1", port=free_port(),
                              weights=chosen.weights)]
    env = {**local_environ(build), "VLLM_CPU_OMP_THREADS_BIND": str(ENGINE_CORE)}
    port = int(command[command.index("--port") + 1])
    server = EngineServer(command, env=env, log=folder / "engine-isolated.log",
                          base_url=f"http://127.0.0.1:{port}")
    gateway: subprocess.Popen[bytes] | None = None
    relay: subprocess.Popen[bytes] | None = None
    own = os.sched_getaffinity(0)
    try:
        asyncio.run(wait_ready(server, timeout_s=600))
        pinned = ("taskset", "-c", str(GATEWAY_CORE))
        gateway, gateway_url = start_gateway(server.base_url, folder, prefix=pinned)
        relay, relay_url = start_relay(server.base_url, folder, prefix=pinned)
        os.sched_setaffinity(0, {GATEWAY_CORE})
        direct = f"{server.base_url}/v1/chat/completions"
        return asyncio.run(paired_ttft(direct, f"{gateway_url}/v1/chat/completions", pairs=args.ttft_pairs,
                                       body=body, relay=f"{relay_url}/v1/chat/completions"))
    finally:
        os.sched_setaffinity(0, own)
        for proc in (gateway, relay):
            if proc is not None:
                stop_process(proc)
        server.stop()


def ttft_table(paired: PairedTtft) -> None:
    print("| path | requests | errors | TTFT p10 ms | TTFT p50 ms | TTFT p90 ms |\n"
          "|---|---|---|---|---|---|")
    paths = [("direct", paired.direct), ("gateway", paired.gateway)]
    for name, r in paths + ([("bare relay", paired.relay)] if paired.relay else []):
        print(f"| {name} | {len(r.results)} | {len(r.errors)} | {r.ttft_ms(0.1):.2f} | "
              f"{r.ttft_ms(0.5):.2f} | {r.ttft_ms(0.9):.2f} |")
    print()
    for what, diffs in (("gateway minus direct", paired.differences_ms),
                        ("bare relay minus direct (one HTTP hop)", paired.relay_ms),
                        ("gateway minus bare relay (the gateway's own work)", paired.own_ms)):
        if diffs:
            print(f"- {what}, per round: p10 {percentile(diffs, 0.1):+.2f} ms, "
                  f"p50 {percentile(diffs, 0.5):+.2f} ms, p90 {percentile(diffs, 0.9):+.2f} ms")


def report(args: argparse.Namespace, run: Run) -> None:
    print(f"\n### engine start and memory (load average before: {run.start_loads[0]}; "
          f"after: {run.start_loads[1]})\n")
    print("| ready s | RSS MiB | PSS MiB | processes |\n|---|---|---|---|")
    print(f"| {run.ready_s:.1f} | {run.rss_mib:.0f} | {run.pss_mib:.0f} | {run.processes} |")
    if run.ttft is not None:
        print(f"\n### time to first token at c=1: {len(run.ttft.direct.results)} back-to-back rounds, "
              f"{TTFT_MAX_TOKENS} tokens each (load average before: {run.ttft_loads[0]}; "
              f"after: {run.ttft_loads[1]})\n")
        ttft_table(run.ttft)
    if run.isolated is not None:
        print(f"\n### the same rounds, the engine on core {ENGINE_CORE} (one compute thread), the gateway, "
              f"the relay and the client on core {GATEWAY_CORE} (load average before: "
              f"{run.isolated_loads[0]}; after: {run.isolated_loads[1]})\n")
        ttft_table(run.isolated)
    eos = " (ignore_eos)" if run.ignore_eos else ""
    for c, (results, (before, after)) in run.levels.items():
        print(f"\n### c={c}, {args.max_tokens} tokens per request{eos} "
              f"(load average before: {before}; after: {after})\n")
        print(HEADER)
        print(row("direct", results["direct"], None))
        print(row("gateway", results["gateway"], results["direct"]))
    if run.old:
        print(f"\n### old path (transformers) vs vLLM direct "
              f"(load average before the old path: {run.old_loads[0]}; after: {run.old_loads[1]})\n")
        print(HEADER)
        for c, r in run.old.items():
            print(row("vLLM", run.levels[c][0]["direct"], None))
            print(row("transformers", r, run.levels[c][0]["direct"]))
    first, last = min(args.levels), max(args.levels)
    one, many = run.levels[first][0], run.levels[last][0]
    added = percentile(run.ttft.differences_ms, 0.5) if run.ttft is not None else math.nan
    alone = percentile(run.isolated.differences_ms, 0.5) if run.isolated is not None else math.nan
    paired = run.isolated if run.isolated is not None else run.ttft
    hop = percentile(paired.relay_ms, 0.5) if paired is not None and paired.relay_ms else math.nan
    own = percentile(paired.own_ms, 0.5) if paired is not None and paired.own_ms else math.nan
    direct_tps = many["direct"].tokens_per_s
    loss = 1 - many["gateway"].tokens_per_s / direct_tps if direct_tps else math.nan
    checks = [
        ("gateway's added TTFT at c=1 (p50 of the pairs), sharing the engine's 2 cores",
         f"{added:+.2f} ms", added, TARGETS["gateway_ttft_ms"], f"<= {TARGETS['gateway_ttft_ms']} ms", True),
        ("gateway's added TTFT at c=1 (p50 of the pairs), the engine on a core of its own",
         f"{alone:+.2f} ms", alone, TARGETS["gateway_ttft_ms"], f"<= {TARGETS['gateway_ttft_ms']} ms", True),
        ("  of which one bare HTTP hop (bench/relay.py minus direct)", f"{hop:+.2f} ms", hop,
         TARGETS["gateway_ttft_ms"], f"<= {TARGETS['gateway_ttft_ms']} ms", True),
        ("  of which the gateway's own work (gateway minus bare relay)", f"{own:+.2f} ms", own,
         TARGETS["gateway_ttft_ms"], f"<= {TARGETS['gateway_ttft_ms']} ms", True),
        (f"gateway's throughput cost at c={last}", f"{loss:.1%}", loss,
         TARGETS["gateway_throughput_loss"], f"<= {TARGETS['gateway_throughput_loss']:.0%}", True),
        (f"vLLM tok/s on one stream (c={first})", f"{one['direct'].tokens_per_s:.1f}",
         one["direct"].tokens_per_s, TARGETS["stream_tok_s"], f">= {TARGETS['stream_tok_s']:.0f}", False),
        (f"vLLM tok/s aggregate at c={last}", f"{direct_tps:.1f}", direct_tps, TARGETS["aggregate_tok_s"],
         f">= {TARGETS['aggregate_tok_s']:.0f}", False),
        ("engine ready", f"{run.ready_s:.1f} s (load average before: {run.start_loads[0]})", run.ready_s,
         TARGETS["ready_s"], f"<= {TARGETS['ready_s']:.0f} s on an idle machine", True),
    ]
    print("\n### issue 15's targets\n\n| what | measured | target | |\n|---|---|---|---|")
    for what, shown, value, goal, wanted, at_most in checks:
        print(f"| {what} | {shown} | {wanted} | {verdict(value, goal, at_most=at_most)} |")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="vLLM engine: direct vs gateway, old path vs vLLM, "
                                                 "start time and memory")
    parser.add_argument("--levels", default="1,8", help="concurrency levels")
    parser.add_argument("--requests", type=int, default=16,
                        help="requests per path and level (at least 4 waves of the level)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (direct, gateway, ...)")
    parser.add_argument("--max-tokens", type=int, default=48, help="tokens generated per request")
    parser.add_argument("--ttft-pairs", type=int, default=40,
                        help="back-to-back direct/gateway pairs of short requests for the TTFT at c=1")
    parser.add_argument("--old-requests", type=int, default=3,
                        help="requests per level on the transformers path (~10 tok/s, one at a time)")
    parser.add_argument("--no-old-path", action="store_true", help="skip the transformers path")
    parser.add_argument("--no-isolated", dest="isolated", action="store_false",
                        help="skip the TTFT pairs with the engine on a core of its own "
                             "(a second engine start)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 4 requests, 16 tokens, 1 on the old path")
    args = parser.parse_args(argv)
    try:
        args.levels = sorted({int(x) for x in args.levels.split(",")})
    except ValueError:
        parser.error(f"--levels {args.levels!r} is not a comma-separated list of whole numbers")
    if args.quick:
        args.requests, args.max_tokens, args.old_requests, args.ttft_pairs = 4, 16, 1, 10
    for name in ("requests", "rounds", "max_tokens", "old_requests", "ttft_pairs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if min(args.levels) < 1:
        parser.error("every concurrency level must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup in measure() on kill
    build = detect_build()
    weights = weights_folder()
    try:
        engine = usable_engine(build)
    except EngineUnavailable as why:
        print(f"bench/engine.py: {why}", file=sys.stderr)
        return 2
    if not is_prepared(weights):
        print(f"bench/engine.py: the offline weights are not prepared in {weights}: "
              "run `aistack engine install`", file=sys.stderr)
        return 2
    chosen = plan(load_stack(DEMO_STACK), build, weights=weights)
    folder = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    print(f"{os.cpu_count()} CPUs; vLLM {build} build at {engine.python}; load average {loadavg()}",
          flush=True)
    run = Run()
    try:
        measure(args, run, engine=engine, build=build, chosen=chosen, folder=folder)
    except (EngineUnavailable, RuntimeError, httpx.HTTPError) as why:
        print(f"bench/engine.py: {why}; the engine's and the gateway's logs are in {folder}", file=sys.stderr)
        return 1
    shutil.rmtree(folder, ignore_errors=True)
    report(args, run)
    errors = run.errors()
    if errors:
        print(f"\n{len(errors)} request(s) failed; the first: {errors[0]}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
