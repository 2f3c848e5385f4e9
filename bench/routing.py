"""The routing benchmark (issue 17 item 1): prefix-affine routing vs round robin over two real vLLM
engines, measured side by side in one run.

Two engines serve the offline model with prefix caching on, each pinned to a core of its own (one
compute thread) with a KV cache of `--kv-gib`; a gateway process routes to both (`Upstream.replicas`
with fixed URLs, as `aistack up` would). The workload is RAG-shaped: long contexts
(system prompt plus retrieved passages, ~`--prefix-tokens` tokens each) whose total is 1.5 times
one engine's KV cache (read from the engine's log; `--prefixes` sets the count instead), so it is
larger than one engine's cache but fits in two, and `--questions` short questions per context,
arriving in a shuffled order (seeded, the same for both policies; a fixed context-after-context
order would make round robin sticky by accident whenever the count of contexts is even). Each
policy gets contexts of its own (the same sizes), so neither inherits the other's cache. Reported
per policy: TTFT p50/p90/p99 (streamed, first content event), the engines' prefix-cache hit rate
(`vllm:prefix_cache_hits_total` over `..._queries_total`, the tokens looked up during the phase) and
how the requests split over the engines. Targets: prefix's TTFT p50 at least 2x lower than round
robin's, and its hit rate at least 80%.

    .venv/bin/python bench/routing.py [--prefixes N] [--questions 8] [--prefix-tokens 1500]
                                      [--kv-gib 1] [--concurrency 2]

Each engine uses ~4 GB of memory; a run takes ~5-10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from aistack.api.manifests import load_stack
from aistack.runtime.engine.locate import detect_build
from aistack.runtime.engine.server import EngineServer, local_command, local_environ
from aistack.runtime.gateway.engine_metrics import parse_engine_metrics
from aistack.runtime.local.engine_model import EngineUnavailable, plan, usable_engine, wait_ready
from aistack.runtime.local.offline_model import OFFLINE_MODEL_NAME
from aistack.runtime.local.offline_weights import is_prepared, weights_folder
from aistack.runtime.local.ports import free_port
from aistack.testing import processes
from aistack.testing.chat_load import StreamResult, percentile, stream_chat
from aistack.testing.gateway import base_config
from aistack.testing.processes import loadavg, stop_process

REPO = Path(__file__).resolve().parents[1]
DEMO_STACK = REPO / "examples" / "rag.yaml"
POLICIES = ("round-robin", "prefix")
TARGETS = {"ttft_ratio": 2.0, "hit_rate": 0.8}
WORDS = ("refund", "shipment", "invoice", "warranty", "account", "billing", "address", "return", "order",
         "delivery", "support", "policy", "credit", "parcel", "exchange", "subscription")


def context(policy: str, i: int, tokens: int) -> str:
    """A long, distinct context: ~`tokens` tokens of SmolLM2's tokenizer (~4 per word-and-number here)."""
    words = [f"{WORDS[(i * 7 + j) % len(WORDS)]}{(i * 131 + j) % 997}" for j in range(tokens // 4)]
    return (f"You answer from the context only.\n\nContext ({policy} document {i}):\n" + " ".join(words))


def requests(policy: str, *, prefixes: int, questions: int, tokens: int,
             seed: int = 17) -> list[dict[str, Any]]:
    """Every context with every question, in an order shuffled by `seed` (the same permutation for
    each policy, since the counts are the same)."""
    contexts = [context(policy, i, tokens) for i in range(prefixes)]
    bodies = [{"model": OFFLINE_MODEL_NAME, "temperature": 0, "max_tokens": 4,
               "messages": [{"role": "system", "content": contexts[i]},
                            {"role": "user", "content": f"Question {q}: what does it say about "
                                                        f"{WORDS[q % len(WORDS)]}?"}]}
              for q in range(questions) for i in range(prefixes)]
    random.Random(seed).shuffle(bodies)
    return bodies


KV_TOKENS = re.compile(r"KV cache size: ([\d,]+) tokens")


def kv_cache_tokens(log: Path) -> int | None:
    """The engine's KV cache in tokens, as its start-up log states it."""
    found = KV_TOKENS.findall(log.read_text(errors="replace")) if log.exists() else []
    return int(found[-1].replace(",", "")) if found else None


def start_gateway(urls: list[str], policy: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    config = base_config(urls[0], model={"publicName": OFFLINE_MODEL_NAME, "primary": {
        "model": OFFLINE_MODEL_NAME, "timeoutSeconds": 600, "replicas": {"urls": urls, "policy": policy}}})
    return processes.start_gateway(config, folder, name=f"gateway-{policy}")


def prefix_counters(engines: Sequence[str]) -> list[tuple[float, float, float]]:
    """(hits, queries, requests finished) of each engine's prefix cache, from its /metrics."""
    out = []
    for base in engines:
        text = httpx.get(f"{base}/metrics", timeout=10).text
        snap = parse_engine_metrics(text, scraped_at=time.time())
        done = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("vllm:request_success_total"))
        out.append((snap.prefix_cache_hits, snap.prefix_cache_queries, done))
    return out


@dataclass
class Phase:
    policy: str
    results: list[StreamResult]
    hit_rate: float
    per_engine: list[int]
    loads: tuple[str, str]

    def ttft_ms(self, q: float) -> float:
        return percentile([r.ttft_s for r in self.results if r.error is None], q) * 1e3


async def drive(url: str, bodies: list[dict[str, Any]], concurrency: int) -> list[StreamResult]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    results: list[StreamResult] = []

    async def worker() -> None:
        async with httpx.AsyncClient(timeout=600) as client:
            while not queue.empty():
                body = queue.get_nowait()
                results.append(await stream_chat(client, url, body))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def phase(policy: str, engines: list[str], folder: Path, args: argparse.Namespace) -> Phase:
    gateway, url = start_gateway([f"{e}/v1" for e in engines], policy, folder)
    try:
        before, load = prefix_counters(engines), loadavg()
        bodies = requests(policy, prefixes=args.prefixes, questions=args.questions, tokens=args.prefix_tokens)
        results = asyncio.run(drive(f"{url}/v1/chat/completions", bodies, args.concurrency))
        after = prefix_counters(engines)
    finally:
        stop_process(gateway)
    hits = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    queries = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    per_engine = [int(a[2] - b[2]) for a, b in zip(after, before, strict=True)]
    p = Phase(policy=policy, results=results, hit_rate=hits / queries if queries else float("nan"),
              per_engine=per_engine, loads=(load, loadavg()))
    errors = [r.error for r in results if r.error]
    print(f"  {policy:<12} {len(results) - len(errors)}/{len(results)} ok  "
          f"TTFT p50 {p.ttft_ms(0.5):8.1f} ms  hit rate {p.hit_rate:.0%}  per engine {per_engine}  "
          f"load {loadavg()}"
          + (f"  first error: {errors[0]}" if errors else ""), flush=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="prefix routing vs round robin over two vLLM engines")
    parser.add_argument("--prefixes", type=int, default=None,
                        help="contexts per policy (default: 1.5x one engine's KV cache in tokens)")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--prefix-tokens", type=int, default=1500)
    parser.add_argument("--kv-gib", type=int, default=1,
                        help="each engine's KV cache (VLLM_CPU_KVCACHE_SPACE)")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args(argv)
    build = detect_build()
    try:
        engine = usable_engine(build)
    except EngineUnavailable as why:
        print(f"bench/routing.py: {why}", file=sys.stderr)
        return 2
    weights = weights_folder()
    if not is_prepared(weights):
        print("bench/routing.py: run `aistack engine install` first", file=sys.stderr)
        return 2
    chosen = plan(load_stack(DEMO_STACK), build, weights=weights)
    folder = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    cores = sorted(os.sched_getaffinity(0))
    servers: list[EngineServer] = []
    try:
        for n in range(2):
            core = str(cores[n % len(cores)])
            port = free_port()
            command = ["taskset", "-c", core,
                       *local_command(engine, chosen.model, build=build, host="127.0.0.1", port=port,
                                      weights=chosen.weights), "--enable-prefix-caching"]
            env = {**local_environ(build), "VLLM_CPU_KVCACHE_SPACE": str(args.kv_gib),
                   "VLLM_CPU_OMP_THREADS_BIND": core}
            servers.append(EngineServer(command, env=env, log=folder / f"engine-{n}.log",
                                        base_url=f"http://127.0.0.1:{port}"))
        for server in servers:
            asyncio.run(wait_ready(server, timeout_s=600))
        kv = kv_cache_tokens(servers[0].log)
        if args.prefixes is None:
            if kv is None:
                raise RuntimeError(f"the engine's log {servers[0].log} states no KV cache size: "
                                   "give --prefixes")
            args.prefixes = math.ceil(1.5 * kv / args.prefix_tokens)
        print(f"{os.cpu_count()} CPUs; 2 engines (KV cache {args.kv_gib} GiB = {kv} tokens each, prefix "
              f"caching on); {args.prefixes} contexts of ~{args.prefix_tokens} tokens "
              f"(~{args.prefixes * args.prefix_tokens} in all) x {args.questions} questions per policy, "
              f"c={args.concurrency}; engines ready, load average {loadavg()}", flush=True)
        phases = [phase(policy, [s.base_url for s in servers], folder, args) for policy in POLICIES]
    except (EngineUnavailable, RuntimeError, httpx.HTTPError) as why:
        print(f"bench/routing.py: {why}; logs in {folder}", file=sys.stderr)
        return 1
    finally:
        for server in servers:
            server.stop()
    shutil.rmtree(folder, ignore_errors=True)
    print("\n| policy | requests | errors | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | prefix-cache hit rate "
          "| requests per engine | load average before -> after |\n|---|---|---|---|---|---|---|---|---|")
    for p in phases:
        errors = sum(1 for r in p.results if r.error)
        print(f"| {p.policy} | {len(p.results)} | {errors} | {p.ttft_ms(0.5):.1f} | {p.ttft_ms(0.9):.1f} | "
              f"{p.ttft_ms(0.99):.1f} | {p.hit_rate:.1%} | {p.per_engine} | {p.loads[0]} -> {p.loads[1]} |")
    rr, prefix = phases
    ratio = rr.ttft_ms(0.5) / prefix.ttft_ms(0.5)
    ratio_met = "met" if ratio >= TARGETS["ttft_ratio"] else "NOT met"
    hits_met = "met" if prefix.hit_rate >= TARGETS["hit_rate"] else "NOT met"
    print(f"\nround robin's TTFT p50 / prefix's: {ratio:.2f}x "
          f"(target >= {TARGETS['ttft_ratio']}x: {ratio_met}); prefix's hit rate {prefix.hit_rate:.1%} "
          f"(target >= {TARGETS['hit_rate']:.0%}: {hits_met})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
