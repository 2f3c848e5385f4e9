"""The retry policy's parts: Retry-After, jittered backoff, the circuit breaker."""

from __future__ import annotations

import email.utils

from aistack.runtime.core.retry import Backoff, CircuitBreaker, retry_after_s


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_s("3") == 3.0 and retry_after_s(" 0.5 ") == 0.5 and retry_after_s("-4") == 0.0
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after_s(date, now=1_000_000) == 30.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None


def test_backoff_is_full_jitter_under_an_exponential_cap():
    asked: list[tuple[float, float]] = []

    def rng(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    backoff = Backoff(base_s=0.1, cap_s=1.0)
    assert [backoff.wait_s(n, rng=rng) for n in range(5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert all(low == 0.0 for low, _ in asked)


def test_backoff_honours_retry_after_and_refuses_one_longer_than_its_cap():
    backoff = Backoff(base_s=0.1, cap_s=2.0)
    assert backoff.wait_s(0, retry_after=1.5, rng=lambda low, high: low) == 1.5
    assert 1.5 <= backoff.wait_s(0, retry_after=1.5) <= 1.6
    assert backoff.wait_s(0, retry_after=30) is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_failures_in_a_row_then_lets_one_probe_through():
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, open_s=10, probe_timeout_s=30, clock=clock)
    for _ in range(2):
        breaker.failure()
    breaker.success()  # a success in between starts the count again
    for _ in range(2):
        breaker.failure()
    assert breaker.allow() and breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow() and breaker.retry_in_s() == 10
    clock.now += 10
    assert breaker.allow() and breaker.state == "half_open"
    assert not breaker.allow()  # one probe at a time
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 10
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_a_probe_that_never_reports_is_replaced():
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, open_s=5, probe_timeout_s=20, clock=clock)
    breaker.failure()
    clock.now += 5
    assert breaker.allow() and not breaker.allow()
    clock.now += 20
    assert breaker.allow()
