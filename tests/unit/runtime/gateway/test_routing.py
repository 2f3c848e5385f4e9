"""Routing over a model's replicas (runtime/gateway/routing.py): a prefix stays on its replica, loads
stay bounded, a replica that leaves moves only its own keys, a failed one sits out its cool-down."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from aistack.runtime.gateway.routing import Router, prompt_key

FOUR = [f"http://10.0.0.{i}:8000/v1" for i in range(1, 5)]


def keys(n: int) -> list[bytes]:
    return [f"system prompt {i} and its retrieved context".encode() for i in range(n)]


def test_a_prefix_stays_on_one_replica_and_prefixes_spread_evenly() -> None:
    router = Router(FOUR)
    placed = {k: router.pick(k) for k in keys(4000)}
    assert all(router.pick(k) == r for k, r in list(placed.items())[:200])
    counts = Counter(placed.values())
    assert set(counts) == set(FOUR)
    assert max(counts.values()) / min(counts.values()) < 1.35, counts


def test_a_replica_that_leaves_moves_only_its_own_keys_and_one_that_joins_takes_a_share() -> None:
    router = Router(FOUR)
    before = {k: router.pick(k) for k in keys(2000)}
    router.update(FOUR[:3])
    after = {k: router.pick(k) for k in before}
    moved = [k for k in before if before[k] != after[k]]
    assert all(before[k] == FOUR[3] for k in moved)
    assert len(moved) == sum(r == FOUR[3] for r in before.values())
    router.update(FOUR)
    assert {k: router.pick(k) for k in before} == before  # the ring is the same again


def test_a_hot_prefix_spills_over_within_the_load_bound() -> None:
    router = Router(FOUR, load_factor=1.25)
    hot = b"one very popular system prompt"
    home = router.pick(hot)
    for _ in range(100):  # 100 requests of one prefix in flight at once
        router.started(router.pick(hot))
    assert max(router.in_flight.values()) <= math.ceil(1.25 * 100 / 4)
    assert router.in_flight[home] == max(router.in_flight.values())  # its home replica filled first
    for replica, n in list(router.in_flight.items()):
        for _ in range(n):
            router.finished(replica)
    assert router.pick(hot) == home and set(router.in_flight.values()) == {0}


def test_a_failed_replica_sits_out_its_cool_down_then_returns_when_listed() -> None:
    now = [100.0]
    router = Router(FOUR, cooldown_s=1.0, clock=lambda: now[0])
    key = b"a prefix"
    home = router.pick(key)
    assert home is not None
    router.failed(home)
    assert home not in router.replicas and router.pick(key) != home
    router.update(FOUR)  # discovery still lists it, within the cool-down: still out
    assert home not in router.replicas
    now[0] += 1.5
    router.update(FOUR)
    assert router.pick(key) == home


def test_retries_exclude_tried_replicas_until_none_is_left() -> None:
    router = Router(FOUR[:2])
    first = router.pick(b"k")
    second = router.pick(b"k", exclude=[first])
    assert second is not None and second != first
    assert router.pick(b"k", exclude=FOUR[:2]) is None
    assert Router([]).pick(b"k") is None


def test_least_busy_and_round_robin() -> None:
    busy = Router(FOUR, policy="least-busy")
    for replica, n in zip(FOUR, (3, 1, 2, 5), strict=True):
        for _ in range(n):
            busy.started(replica)
    assert busy.pick(b"anything") == FOUR[1]
    rr = Router(FOUR, policy="round-robin")
    assert Counter(rr.pick(b"same") for _ in range(40)) == dict.fromkeys(FOUR, 10)
    with pytest.raises(ValueError, match="load_factor"):
        Router(FOUR, load_factor=0.5)


def test_the_key_is_the_prompts_leading_text() -> None:
    context = [{"role": "system", "content": "You answer from the context.\n" + "passage " * 800}]
    one = prompt_key([*context, {"role": "user", "content": "first question"}])
    two = prompt_key([*context, {"role": "user", "content": "another question"}])
    assert one == two and len(one) == 4096  # the same long context: the same replica
    short = [{"role": "system", "content": "Be brief."}]
    assert prompt_key([*short, {"role": "user", "content": "a"}]) != prompt_key(
        [*short, {"role": "user", "content": "b"}])
