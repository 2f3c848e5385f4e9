"""Keeping the garbage collector's full passes off the request path.

A serving gateway holds a large, long-lived heap (the app, the config's state, under `aistack
up` the embedder and its libraries) that a full (generation-2) collection walks every time, to
free nothing: at 16 concurrent requests those passes (35-63 ms) were the gateway's whole p99.
Frozen objects are never walked again, so the heap is frozen once everything long-lived is
built: when the app starts serving and after each config reload (whose new state would
otherwise be walked by every full pass), and once more when a reload's old state is closed.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("aistack.gateway")
YOUNG_THRESHOLD = 10_000
"""Allocations between young collections (CPython's default, 700, ran one every few requests):
requests leave no reference cycles in steady state, so this delays little garbage."""


def settle_heap() -> None:
    """Collect what is garbage now, then freeze everything left out of later collections.

    Unfreezing first lets a retired state's cycles, frozen by an earlier call, be freed; the one
    full pass this costs is paid here, at startup or a reload, never per request.
    """
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
    log.debug("heap settled: %d objects frozen in %.1f ms", gc.get_freeze_count(),
              (time.perf_counter() - started) * 1e3)
