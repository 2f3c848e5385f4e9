"""bench/engine.py's own logic, without an engine: rounds of whole waves, the back-to-back TTFT
pairs and rounds with the bare relay (against the fake OpenAI server), the memory of a process
tree, and its options."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from aistack.testing.openai_server import run_openai_server

SLEEPING_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
try:
    time.sleep(60)
finally:
    child.kill()
"""
SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "engine.py"
spec = importlib.util.spec_from_file_location("aistack_bench_engine", SCRIPT)
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
sys.modules["aistack_bench_engine"] = bench
spec.loader.exec_module(bench)


@pytest.mark.parametrize(("requests", "concurrency", "rounds", "expected"), [
    (16, 1, 2, 8), (16, 8, 2, 16), (4, 8, 2, 16), (17, 1, 2, 9), (40, 8, 3, 16)])
def test_a_round_is_whole_waves_and_a_level_at_least_four(requests: int, concurrency: int, rounds: int,
                                                         expected: int) -> None:
    n = bench.per_round(requests, concurrency=concurrency, rounds=rounds)
    assert n == expected and n % concurrency == 0 and n * rounds >= max(requests, 4 * concurrency)


def test_ttft_pairs_alternate_and_only_pairs_without_errors_count() -> None:
    with run_openai_server(models=[bench.OFFLINE_MODEL_NAME]) as upstream:
        url = f"{upstream.base_url}/chat/completions"
        upstream.configure(fail_next=["", "", "500"])  # the two opening requests, then pair 0's first
        body = bench.chat_body(max_tokens=2, ignore_eos=False)
        paired = asyncio.run(bench.paired_ttft(url, url, body=body, pairs=4))
        sent = len(upstream.requests)
    assert sent == 2 + 8
    assert (len(paired.direct.results), len(paired.gateway.results)) == (4, 4)
    assert paired.direct.errors and paired.direct.errors[0].startswith("HTTP 500")
    assert len(paired.differences_ms) == 3


def test_the_memory_of_a_process_tree_counts_its_children() -> None:
    parent = subprocess.Popen([sys.executable, "-c", SLEEPING_PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        rss, pss = bench.memory_mib(parent.pid)
        both = sum(psutil.Process(pid).memory_info().rss for pid in (parent.pid, child)) / 2**20
        assert rss == pytest.approx(both, abs=2)
        assert 0 < pss <= rss
    finally:
        parent.kill()
        parent.wait()


def test_quick_is_a_small_run_and_bad_options_are_refused() -> None:
    quick = bench.parse_args(["--quick", "--levels", "8,1"])
    assert (quick.levels, quick.requests, quick.max_tokens, quick.ttft_pairs) == ([1, 8], 4, 16, 10)
    for argv in (["--levels", "1,x"], ["--levels", "0"], ["--rounds", "0"], ["--ttft-pairs", "-1"]):
        with pytest.raises(SystemExit) as exited:
            bench.parse_args(argv)
        assert exited.value.code == 2


def test_rounds_with_the_bare_relay_rotate_and_split_the_gateways_cost(tmp_path: Path) -> None:
    with run_openai_server(models=[bench.OFFLINE_MODEL_NAME]) as upstream:
        relay, relay_url = bench.start_relay(upstream.base_url.removesuffix("/v1"), tmp_path)
        try:
            url = f"{upstream.base_url}/chat/completions"
            body = bench.chat_body(max_tokens=2, ignore_eos=False)
            direct = httpx.post(url, json={**body, "stream": True}).text
            relayed = httpx.post(f"{relay_url}/v1/chat/completions", json={**body, "stream": True})
            assert relayed.headers["content-type"].startswith("text/event-stream")
            assert _contents(direct) and _contents(relayed.text) == _contents(direct)
            assert "[DONE]" in relayed.text
            paired = asyncio.run(bench.paired_ttft(url, url, body=body, pairs=6,
                                                   relay=f"{relay_url}/v1/chat/completions"))
        finally:
            bench.stop_process(relay)
        sent = len(upstream.requests)
    assert relay.poll() is not None
    assert sent == 2 + 3 + 3 * 6  # the two above, three opening requests, then three per round
    assert paired.relay is not None and len(paired.relay.ok) == 6
    assert len(paired.differences_ms) == len(paired.relay_ms) == len(paired.own_ms) == 6
    for gateway_minus_direct, relay_minus_direct, gateway_minus_relay in zip(
            paired.differences_ms, paired.relay_ms, paired.own_ms, strict=True):
        assert gateway_minus_direct == pytest.approx(relay_minus_direct + gateway_minus_relay)


def _contents(sse: str) -> list[str]:
    """The content deltas of an SSE chat stream (ids and timestamps differ between requests)."""
    events = [json.loads(line[5:]) for line in sse.splitlines()
              if line.startswith("data:") and line[5:].strip() != "[DONE]"]
    return [c["delta"].get("content") or "" for e in events for c in e.get("choices", [])]
