"""The canary split's arithmetic: share, stickiness, monotonic steps, the analysis window."""

from __future__ import annotations

from aistack.api.canary_report import CanaryReport, VersionStats, total_stats
from aistack.api.gateway_config import CanaryConfig, Upstream
from aistack.runtime.gateway.canary import Split, VersionWindow, point


def split(weight: float, **kw: object) -> Split:
    return Split(CanaryConfig(upstream=Upstream(base_url="http://x/v1", model="m"), weight=weight,
                              **kw))  # type: ignore[arg-type]


def test_a_90_10_split_over_2000_keys_lands_within_2_points_of_10_percent() -> None:
    s = split(10, sticky_by="header", sticky_header="X-Session")
    keys = [f"session-{i}" for i in range(2000)]
    share = sum(s.choose(k) == "canary" for k in keys) / len(keys)
    assert abs(share - 0.10) <= 0.02, share


def test_a_90_10_split_without_keys_lands_within_2_points_and_is_reproducible_under_a_seed() -> None:
    s1, s2 = split(10, seed=3), split(10, seed=3)
    a = [s1.choose(None) for _ in range(2000)]
    b = [s2.choose(None) for _ in range(2000)]
    assert a == b
    assert abs(a.count("canary") / 2000 - 0.10) <= 0.02


def test_every_key_stays_on_its_version() -> None:
    s = split(30, sticky_by="apiKey")
    for i in range(500):
        key = f"sk-{i}"
        assert len({s.choose(key) for _ in range(5)}) == 1


def test_a_rising_weight_only_moves_keys_to_the_canary() -> None:
    keys = [f"tenant-{i}" for i in range(1000)]
    before = {k: split(10).choose(k) for k in keys}
    after = {k: split(50).choose(k) for k in keys}
    assert all(after[k] == "canary" for k in keys if before[k] == "canary")
    assert sum(v == "canary" for v in after.values()) > sum(v == "canary" for v in before.values())


def test_weight_0_and_100_send_everything_one_way() -> None:
    assert {split(0).choose(f"k{i}") for i in range(200)} == {"stable"}
    assert {split(100).choose(f"k{i}") for i in range(200)} == {"canary"}
    assert 0 <= point("x") < 100


def test_the_window_forgets_what_is_older_than_it() -> None:
    now = [1000.0]
    window = VersionWindow(60, clock=lambda: now[0])
    window.observe("canary", 0.2, ok=False)
    window.observe("stable", 0.1, ok=True)
    now[0] += 30
    window.observe("canary", 0.3, ok=True)
    totals = window.totals()
    assert (totals["canary"].requests, totals["canary"].errors, totals["stable"].requests) == (2, 1, 1)
    now[0] += 45  # the first calls are now 75 s old
    totals = window.totals()
    assert (totals["canary"].requests, totals["stable"].requests) == (1, 0)
    assert window.active
    now[0] += 61
    assert not window.active and window.totals()["canary"].requests == 0


def test_reports_add_up_over_pods_and_stale_ones_are_left_out() -> None:
    a, b = VersionStats(), VersionStats()
    for _ in range(90):
        a.observe(0.08, ok=True)
    for _ in range(10):
        b.observe(0.4, ok=False)
    fresh = CanaryReport(at=1000.0, window=60, versions={"stable": a, "canary": b}).encode()
    stale = CanaryReport(at=800.0, window=60, versions={"stable": a, "canary": b}).encode()
    totals = total_stats({"canary.aistack.dev/gw-1": fresh, "canary.aistack.dev/gw-2": fresh,
                          "canary.aistack.dev/gw-3": stale, "canary.aistack.dev/bad": "{",
                          "load.aistack.dev/gw-1": '{"demand":1,"held":0,"at":1000}'},
                         now=1010.0, window_s=60)
    assert (totals["stable"].requests, totals["canary"].requests, totals["canary"].errors) == (180, 20, 20)
    assert totals["canary"].error_rate == 1.0
    p95 = totals["stable"].quantile(0.95)
    assert p95 is not None and 0.05 < p95 <= 0.1
    p95c = totals["canary"].quantile(0.95)
    assert p95c is not None and 0.25 < p95c <= 0.5
