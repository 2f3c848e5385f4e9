"""A broken watch lists again after a jittered, growing delay."""

from __future__ import annotations

from aistack.operator.machinery.listwatch import BACKOFF, watch_backoff


def test_the_watch_backoff_grows_and_is_jittered_within_each_step() -> None:
    for failures, step in enumerate([*BACKOFF, BACKOFF[-1], BACKOFF[-1]]):
        delays = {watch_backoff(failures) for _ in range(30)}
        assert all(step / 2 <= d <= step for d in delays)
        assert len(delays) > 1  # streams broken together do not come back together
