"""bench/routing.py's own logic, without an engine: the workload's order and sizes, and the KV
cache size read from an engine's log."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[3]


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_routing", REPO / "bench" / "routing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


routing = load_bench()


def system_prompt(body: dict) -> str:
    return body["messages"][0]["content"]


def test_round_robin_over_two_engines_spreads_every_context_over_both() -> None:
    """In the fixed context-after-context order an even count of contexts sent each context to one
    engine under round robin (as if it were prefix-affine): the shuffled order must not."""
    bodies = routing.requests("round-robin", prefixes=24, questions=8, tokens=40)
    per_context = Counter(map(system_prompt, bodies))
    assert len(per_context) == 24 and set(per_context.values()) == {8}
    engines_of: dict[str, set[int]] = {}
    for i, body in enumerate(bodies):
        engines_of.setdefault(system_prompt(body), set()).add(i % 2)
    assert sum(1 for engines in engines_of.values() if engines == {0, 1}) >= 20


def test_both_policies_get_the_same_order_of_distinct_contexts_of_the_same_size() -> None:
    rr = routing.requests("round-robin", prefixes=6, questions=3, tokens=400)
    prefix = routing.requests("prefix", prefixes=6, questions=3, tokens=400)
    assert not set(map(system_prompt, rr)) & set(map(system_prompt, prefix))
    assert [len(system_prompt(b).split()) for b in rr] == [len(system_prompt(b).split()) for b in prefix]
    assert [b["messages"][1]["content"] for b in rr] == [b["messages"][1]["content"] for b in prefix]


def test_the_kv_cache_size_is_read_from_the_engines_log(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    assert routing.kv_cache_tokens(log) is None
    log.write_text("(EngineCore pid=1) INFO [kv_cache_utils.py:2327] CPU KV cache size: 23,296 tokens, "
                   "Maximum concurrency for 2,048 tokens per request: 11.38x\n")
    assert routing.kv_cache_tokens(log) == 23296
