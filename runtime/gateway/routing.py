"""Spreading one model's requests over its replicas: prefix-affine with bounded loads, least busy, or
round robin.

`prefix` is consistent hashing with bounded loads (CHWBL, as KubeAI routes): each replica holds
`VNODES` points on a hash ring; a request's key (the leading characters of its prompt: system
prompt plus retrieved context, what vLLM's prefix cache can reuse) hashes to a point, and the
request goes to the first replica clockwise whose requests in flight stay under
`ceil(load_factor * (in flight + 1) / replicas)`. So a prefix keeps landing on the replica that
holds its KV cache, a hot prefix spills to the next replica on the ring rather than queueing
behind itself, and a replica that leaves moves only its own keys.

A replica that fails (refused connection, 5xx before the first byte) is left out until the
discovery lists it again after `cooldown_s`; the caller retries the request on another replica.
Pure and synchronous (the caller counts requests in and out), so it is tested without a network.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Literal

Policy = Literal["prefix", "least-busy", "round-robin"]
VNODES = 160
"""Points per replica on the ring: enough that 2-16 replicas share the ring within a few percent."""
KEY_CHARS = 4096
"""How much of the prompt makes the key: vLLM caches in blocks of 16 tokens, so the leading ~1k
tokens (system prompt and context) decide which replica already holds them."""


def _point(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def prompt_key(messages: Sequence[dict[str, object]], *, chars: int = KEY_CHARS) -> bytes:
    """The routing key of a chat request: its messages' roles and text, in order, up to `chars`."""
    parts: list[str] = []
    size = 0
    for message in messages:
        content = message.get("content")
        text = content if isinstance(content, str) else str(content or "")
        piece = f"{message.get('role', '')}\x00{text}\x00"
        parts.append(piece)
        size += len(piece)
        if size >= chars:
            break
    return "".join(parts)[:chars].encode("utf-8", "surrogatepass")


class Router:
    """The ready replicas of one model (base URLs), how busy each is, and the choice among them."""

    def __init__(self, replicas: Iterable[str] = (), *, policy: Policy = "prefix", load_factor: float = 1.25,
                 cooldown_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if load_factor < 1:
            raise ValueError(f"load_factor {load_factor} must be at least 1")
        self.policy: Policy = policy
        self.load_factor = load_factor
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.in_flight: dict[str, int] = {}
        self._down: dict[str, float] = {}
        self._ring: list[tuple[int, str]] = []
        self._points: list[int] = []
        self._next = 0
        self.update(replicas)

    @property
    def replicas(self) -> list[str]:
        return sorted(self.in_flight)

    def update(self, replicas: Iterable[str]) -> None:
        """The replicas discovery lists now; one failed within `cooldown_s` stays out."""
        wanted = set(replicas)
        now = self.clock()
        self._down = {r: t for r, t in self._down.items() if r in wanted and now - t < self.cooldown_s}
        listed = wanted - set(self._down)
        if listed == set(self.in_flight):
            return
        self.in_flight = {r: self.in_flight.get(r, 0) for r in listed}
        self._ring = sorted((_point(f"{r}#{i}".encode()), r) for r in listed for i in range(VNODES))
        self._points = [p for p, _ in self._ring]

    def failed(self, replica: str) -> None:
        """Leave `replica` out until discovery lists it again after the cool-down."""
        self._down[replica] = self.clock()
        self.update([*self.in_flight, *self._down])

    def pick(self, key: bytes = b"", *, exclude: Iterable[str] = (),
             among: Collection[str] | None = None) -> str | None:
        """The replica for a request with routing key `key` (None when none is left). `among`: the
        replicas that can serve it (those holding its LoRA adapter), when any of them is left; the
        bounded load still counts every replica, so a busy holder's spill goes to the next holder."""
        skip = set(exclude)
        candidates = [r for r in self.in_flight if r not in skip]
        if among is not None and (held := [r for r in candidates if r in among]):
            skip |= set(candidates) - set(held)
            candidates = held
        if not candidates:
            return None
        if self.policy == "round-robin":
            ordered = sorted(candidates)
            self._next += 1
            return ordered[self._next % len(ordered)]
        if self.policy == "least-busy":
            return min(sorted(candidates), key=lambda r: self.in_flight[r])
        limit = math.ceil(self.load_factor * (sum(self.in_flight.values()) + 1) / len(self.in_flight))
        start = bisect.bisect(self._points, _point(key))
        fallback: str | None = None
        for i in range(len(self._ring)):
            replica = self._ring[(start + i) % len(self._ring)][1]
            if replica in skip:
                continue
            if self.in_flight[replica] < limit:
                return replica
            fallback = fallback or replica
        return fallback

    def started(self, replica: str) -> None:
        if replica in self.in_flight:
            self.in_flight[replica] += 1

    def finished(self, replica: str) -> None:
        if self.in_flight.get(replica, 0) > 0:
            self.in_flight[replica] -= 1
