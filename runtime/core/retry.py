"""When a failed call to an upstream (a model, an embeddings endpoint) deserves another try, how
long to wait first, and when to stop calling an upstream that keeps failing.

Only what another try can fix is retried: a refused or dropped connection, 429 and 502-504.
401/403/404 and the other 4xx will answer the same again; a 500 is the upstream's own bug.
Waits are exponential with full jitter (clients that failed together do not come back together)
and honour `Retry-After`; an upstream that asks for longer than `cap_s` is not waited for.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""HTTP statuses another try may fix."""


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` in seconds from now (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: try n waits uniformly in [0, min(cap, base * 2**n)]."""

    base_s: float = 0.05
    cap_s: float = 2.0

    def wait_s(self, attempt: int, *, retry_after: float | None = None,
               rng: Callable[[float, float], float] = random.uniform) -> float | None:
        """Seconds to wait before the try after `attempt` (0-based); None: do not retry, the upstream
        asked (`Retry-After`) for longer than `cap_s`."""
        if retry_after is not None:
            if retry_after > self.cap_s:
                return None
            return retry_after + rng(0.0, min(self.base_s, self.cap_s - retry_after))
        return rng(0.0, min(self.cap_s, self.base_s * 2 ** attempt))


CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """One upstream's breaker: after `threshold` failures in a row it opens and the upstream gets no
    traffic for `open_s`; then one request probes it (half-open): success closes the breaker, a
    failure opens it again. A probe that never reports (its client went away) is replaced after
    `probe_timeout_s`.
    """

    def __init__(self, *, threshold: int = 5, open_s: float = 10.0, probe_timeout_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.open_s = open_s
        self.probe_timeout_s = probe_timeout_s
        self._clock = clock
        self.state: CircuitState = "closed"
        self.failures = 0
        self._since = 0.0

    def allow(self) -> bool:
        """Whether a request may go to the upstream now (in half-open: only the probe)."""
        if self.state == "closed":
            return True
        now = self._clock()
        if self.state == "open" and now - self._since >= self.open_s:
            self.state, self._since = "half_open", now
            return True
        if self.state == "half_open" and now - self._since >= self.probe_timeout_s:
            self._since = now
            return True
        return False

    def retry_in_s(self) -> float:
        """Seconds until the next probe may go (0 when closed)."""
        if self.state == "closed":
            return 0.0
        return max(0.0, self._since + self.open_s - self._clock())

    def success(self) -> None:
        self.state, self.failures = "closed", 0

    def failure(self) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.threshold:
            self.state, self._since = "open", self._clock()
