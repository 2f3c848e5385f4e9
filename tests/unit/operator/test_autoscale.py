"""The built-in autoscaler's decisions, driven with load curves on a fake clock."""

from __future__ import annotations

import math
import random

from aistack.api.model_load import REPORT_TTL_SECONDS, LoadReport, material, report_key, total_load
from aistack.api.scale_policy import ScaleMemory, ScalePolicy, decide

POLICY = ScalePolicy(min_replicas=1, max_replicas=6, target=10, down_delay_s=60, idle_s=300)


def drive(policy: ScalePolicy, loads: list[int], *, start: int = 1, step_s: float = 5.0) -> list[int]:
    """The replica count after each sample of `loads`, one every `step_s`, counts set at once."""
    current, memory, counts = start, ScaleMemory(), []
    for i, demand in enumerate(loads):
        decision = decide(policy, current=current, demand=demand, now=i * step_s, memory=memory)
        current, memory = decision.replicas, decision.memory
        counts.append(current)
    return counts


def events(counts: list[int], start: int = 1) -> int:
    return sum(1 for a, b in zip([start, *counts], counts, strict=False) if a != b)


def test_a_step_up_scales_at_once_and_back_down_once_after_the_delay() -> None:
    loads = [5] * 10 + [45] * 20 + [5] * 40
    counts = drive(POLICY, loads)
    assert counts[10] == 5  # ceil(45 / 10) at the first sample
    assert events(counts) == 2
    down = counts.index(1, 10)
    assert (down - 30) * 5 >= POLICY.down_delay_s  # not before the delay
    assert (down - 30) * 5 <= POLICY.down_delay_s + 5


def test_noise_around_a_step_edge_does_not_flap() -> None:
    rng = random.Random(7)
    loads = [rng.randint(9, 11) for _ in range(500)]  # around 1 replica's target of 10
    counts = drive(POLICY, loads)
    assert events(counts) == 1 and set(counts) <= {1, 2} and counts[-100:] == [2] * 100


def test_a_noisy_load_between_steps_gives_few_events() -> None:
    rng = random.Random(3)
    loads = [max(0, round(rng.gauss(25, 6))) for _ in range(1000)]
    counts = drive(POLICY, loads)
    naive = [math.ceil(d / POLICY.target) for d in loads]  # the count each sample alone asks for
    assert events(naive) > 300
    assert events(counts) <= 10, counts
    changes = [i for i in range(1, len(counts)) if counts[i] != counts[i - 1]]
    for before, at in zip(changes, changes[1:], strict=False):
        if counts[at] < counts[at - 1]:  # every step down waited the delay since the last change
            assert (at - before) * 5 >= POLICY.down_delay_s


def test_never_below_min_nor_above_max() -> None:
    policy = ScalePolicy(min_replicas=2, max_replicas=3, target=1, down_delay_s=0, idle_s=0)
    counts = drive(policy, [0, 100, 0, 0, 50, 0], start=5)
    assert all(2 <= c <= 3 for c in counts)
    assert drive(policy, [0], start=0) == [2]


def test_scale_to_zero_after_the_idle_window_and_held_demand_wakes_it() -> None:
    policy = ScalePolicy(min_replicas=0, max_replicas=2, target=4, down_delay_s=30, idle_s=120)
    counts = drive(policy, [2] * 4 + [0] * 40 + [1] + [0] * 3, step_s=5)
    first_zero = counts.index(0)
    assert (first_zero - 3) * 5 >= 120  # idle for the whole window
    assert counts[44] == 1  # one held request: one replica at once
    assert events(counts) == 2


def test_a_pending_scale_down_says_when_to_look_again() -> None:
    policy = ScalePolicy(min_replicas=0, max_replicas=4, target=10, down_delay_s=60, idle_s=300)
    decision = decide(policy, current=3, demand=5, now=1000, memory=ScaleMemory(busy_at=990))
    assert decision.replicas == 3 and decision.recheck_at == 1060
    later = decide(policy, current=3, demand=5, now=1060, memory=decision.memory)
    assert later.replicas == 1
    idle = decide(policy, current=1, demand=0, now=2000, memory=ScaleMemory(busy_at=1900))
    assert idle.replicas == 1 and idle.recheck_at == 2200


def test_reports_sum_fresh_pods_and_drop_stale_or_broken_ones() -> None:
    now = 10_000.0
    annotations = {
        report_key("gw-a"): LoadReport(demand=3, held=1, at=now - 5).encode(),
        report_key("gw-b"): LoadReport(demand=4, held=0, at=now - 20).encode(),
        report_key("gw-gone"): LoadReport(demand=50, held=0, at=now - REPORT_TTL_SECONDS - 1).encode(),
        report_key("gw-bad"): "{not json",
        "other/annotation": "1",
    }
    load = total_load(annotations, now=now)
    assert (load.demand, load.held) == (7, 1)
    assert load.expires_at == now - 20 + REPORT_TTL_SECONDS


def test_a_pods_report_key_is_a_valid_annotation_name() -> None:
    key = report_key("x" * 80 + "/pod_name")
    assert len(key.split("/", 1)[1]) <= 63 and "/" not in key.split("/", 1)[1]


def test_material_changes() -> None:
    assert material(0, 1, target=10) and material(1, 0, target=10)
    assert not material(3, 5, target=10) and material(3, 8, target=10)


QUEUE = ScalePolicy(min_replicas=1, max_replicas=6, target=100, down_delay_s=60, idle_s=300, target_waiting=4)


def drive_queue(policy: ScalePolicy, queue: list[int], *, demand: int = 10, step_s: float = 5.0) -> list[int]:
    current, memory, counts = 1, ScaleMemory(), []
    for i, waiting in enumerate(queue):
        decision = decide(policy, current=current, demand=demand, waiting=waiting, now=i * step_s,
                          memory=memory)
        current, memory = decision.replicas, decision.memory
        counts.append(current)
    return counts


def test_the_engines_queue_scales_up_at_once_and_down_after_the_delay() -> None:
    """A demand of 10 is a tenth of one replica's targetRequests; the engines queue 14 (their batch
    or KV cache is full): ceil(14 / 4) replicas at once, and one again once the queue is gone."""
    counts = drive_queue(QUEUE, [0] * 10 + [14] * 20 + [0] * 40)
    assert counts[10] == 4
    assert events(counts) == 2
    down = counts.index(1, 10)
    assert (down - 30) * 5 >= QUEUE.down_delay_s


def test_a_noisy_queue_around_a_step_edge_does_not_flap() -> None:
    rng = random.Random(11)
    queue = [rng.randint(6, 10) for _ in range(500)]  # around 2 replicas' worth of 4 waiting each
    counts = drive_queue(QUEUE, queue)
    naive = [max(1, math.ceil(w / QUEUE.target_waiting)) for w in queue]  # type: ignore[operator]
    assert events(naive) > 100
    assert events(counts) <= 2 and set(counts) <= {1, 2, 3}


def test_the_larger_of_the_two_signals_decides_and_says_which() -> None:
    policy = ScalePolicy(min_replicas=1, max_replicas=10, target=4, down_delay_s=0, idle_s=300,
                         target_waiting=2)
    by_demand = decide(policy, current=1, demand=20, waiting=2, now=0, memory=ScaleMemory())
    assert by_demand.replicas == 5 and by_demand.reason.startswith("demand 20 needs 5 replicas")
    by_queue = decide(policy, current=1, demand=4, waiting=12, now=0, memory=ScaleMemory())
    assert by_queue.replicas == 6 and "12 requests waiting in the engines need 6 replicas" in by_queue.reason
    without = ScalePolicy(min_replicas=1, max_replicas=10, target=4, down_delay_s=0, idle_s=300)
    assert decide(without, current=1, demand=4, waiting=12, now=0, memory=ScaleMemory()).replicas == 1


def test_a_queue_keeps_a_model_from_stopping_while_demand_is_zero() -> None:
    policy = ScalePolicy(min_replicas=0, max_replicas=2, target=4, down_delay_s=0, idle_s=10,
                         target_waiting=2)
    decision = decide(policy, current=1, demand=0, waiting=1, now=100, memory=ScaleMemory(busy_at=0))
    assert decision.replicas == 1


def test_the_engines_numbers_are_the_largest_report_not_the_sum() -> None:
    """Every gateway pod reads the same replicas: their queue counts once, their demands add up."""
    now = 10_000.0
    annotations = {
        report_key("gw-a"): LoadReport(demand=3, held=0, at=now - 5, waiting=6, kv=0.9).encode(),
        report_key("gw-b"): LoadReport(demand=4, held=0, at=now - 2, waiting=5, kv=0.95).encode(),
        report_key("gw-c"): LoadReport(demand=1, held=0, at=now - 1).encode(),
    }
    load = total_load(annotations, now=now)
    assert (load.demand, load.waiting, load.kv) == (8, 6, 0.95)


def test_a_report_round_trips_and_an_older_gateways_report_still_reads() -> None:
    report = LoadReport(demand=2, held=1, at=12.5, waiting=3, kv=0.5)
    assert LoadReport.decode(report.encode()) == report
    assert LoadReport.decode('{"demand":2,"held":0,"at":1.0}') == LoadReport(demand=2, held=0, at=1.0)
    assert "waiting" not in LoadReport(demand=1, held=0, at=1.0).encode()
    for bad in ('{"demand":1,"held":0,"at":1,"waiting":-1}', '{"demand":1,"held":0,"at":1,"kv":1.5}',
                '[1, 2]'):
        assert LoadReport.decode(bad) is None
