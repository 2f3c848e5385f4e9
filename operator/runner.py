"""The operator's side of a reconcile: what it remembers of each stack between runs.

`reconcile()` is synchronous and remembers nothing; `Runner` runs it in a thread, started by a
kopf handler (`converge`) or by its `WorkQueue` (a child change, a retry, the drift pass), and
keeps per stack what a run needs from the ones before: the status it last wrote and the newest
generation it saw (a cached body lags behind this process's own writes while kopf is busy with
the same object), and the stacks being deleted (a cached body may not show the deletion yet,
and a reconcile then would recreate children or the collection the finalizer just removed).
What it wrote of the children `ChildCache` keeps (`ChildCache.record`). It counts runs, writes
and errors for the liveness probe and the benchmark, and posts the Events a reconcile reports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from aistack.operator.autoscale import ScaleMemory
from aistack.operator.collection import QdrantClients
from aistack.operator.kube import ApiError, Kube
from aistack.operator.machinery.peering import PeeringWatch
from aistack.operator.machinery.queue import WorkQueue
from aistack.operator.options import OperatorOptions
from aistack.operator.reconcile import Outcome, RenderMemo, finalize, reconcile
from aistack.operator.watch import Change, ChildCache, StackCache, StackKey

log = logging.getLogger("aistack.operator")


@dataclass
class Counters:
    """Reconcile counts, for the liveness probe and the benchmark."""

    runs: int = 0
    writes: int = 0
    errors: int = 0


class Runner:
    """Runs reconciles of stacks, one at a time per stack (through `queue`), with what this
    process remembers of each."""

    def __init__(self, *, kube: Kube, options: OperatorOptions, cache: ChildCache, stacks: StackCache,
                 peering: PeeringWatch | None = None) -> None:
        self.kube, self.options, self.cache, self.stacks, self.peering = kube, options, cache, stacks, peering
        self.queue: WorkQueue[StackKey] = WorkQueue(
            self._from_cache, retry_delay=options.retry_delay, max_retry_delay=options.max_retry_delay,
            gate=None if peering is None else peering.active.wait)
        self.counters = Counters()
        self.renders = RenderMemo()
        self.qdrant = QdrantClients(options.qdrant_factory)
        """Qdrant clients kept between reconciles; closed by `close()` when the operator stops."""
        self.known_status: dict[StackKey, dict[str, Any]] = {}
        self.generations: dict[StackKey, int] = {}
        self.deleting: set[str] = set()
        """The uids of stacks being deleted."""
        self.scale_memory: dict[StackKey, ScaleMemory] = {}
        """What the built-in autoscaler remembers of each autoscaled model (lost on restart: its
        delays start again, which only postpones a scale-down)."""

    async def converge(self, key: StackKey, body: Mapping[str, Any]) -> Outcome:
        """Reconcile `key` from `body` (a kopf handler's, made plain) once no other run of it runs."""
        async with self.queue.serialised(key):
            return await self._run(key, body)

    async def delete(self, key: StackKey, body: Mapping[str, Any]) -> str:
        """The stack is being deleted: let a running reconcile end, clean up (`finalize()`), and
        forget it. Raises what the clean-up raised (Qdrant or the API down); nothing is
        forgotten then, as the finalizer keeps the stack until a retry succeeds."""
        self.deleting.add((body.get("metadata") or {}).get("uid") or "")
        async with self.queue.serialised(key):
            message = await asyncio.to_thread(finalize, body, kube=self.kube, qdrant=self.qdrant,
                                              version=self.options.version)
        self.forget(key)
        return message

    def forget(self, key: StackKey) -> None:
        for table in (self.known_status, self.generations, self.scale_memory):
            table.pop(key, None)
        self.renders.forget(key)
        self.cache.forget(key)
        self.queue.forget(key)

    def close(self) -> None:
        """The operator stops: close what outlives a reconcile (the Qdrant clients)."""
        self.qdrant.close()

    def child_changed(self, change: Change) -> None:
        """A child was added, changed or deleted by someone else: reconcile its stack soon."""
        if self.stacks.get(change.stack) is not None:
            self.queue.schedule(change.stack, delay=self.options.debounce)

    def resumed(self) -> None:
        """Back from a pause: another operator may have written statuses meanwhile, so the
        status this process last wrote is no longer known to stand."""
        self.known_status.clear()

    async def _from_cache(self, key: StackKey) -> bool:
        """The queue's reconcile: the stack's body from `StackCache`; True to run again later."""
        body = self.stacks.get(key)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return False
        try:
            outcome = await self._run(key, body)
        except ApiError as err:
            log.warning("reconcile of %s/%s failed, retrying (backing off): %s", *key, err)
            return True
        return bool(outcome.retry)

    async def _run(self, key: StackKey, body: Mapping[str, Any]) -> Outcome:
        meta = body.get("metadata", {})
        if meta.get("uid") in self.deleting or meta.get("deletionTimestamp"):
            return Outcome()
        generation = int(meta.get("generation") or 0)
        if generation < self.generations.get(key, 0):
            return Outcome()  # a stale cached body: a newer spec was already applied
        self.generations[key] = generation
        cached = self.cache.children(key)
        self.counters.runs += 1
        try:
            outcome = await asyncio.to_thread(
                reconcile, body, kube=self.kube, qdrant=self.qdrant,
                version=self.options.version,
                live=self.cache.with_own_writes(key, cached), known_status=self.known_status.get(key),
                renderer=self.renders, scale_memory=self.scale_memory.get(key))
        except ApiError:
            self.counters.errors += 1
            raise
        if outcome.status:
            self.known_status[key] = outcome.status
        if outcome.scale_memory is not None:
            self.scale_memory[key] = outcome.scale_memory
        else:
            self.scale_memory.pop(key, None)
        if outcome.recheck_in is not None:
            self.queue.schedule(key, delay=outcome.recheck_in)
        if outcome.applied is not None:
            self.cache.record(key, outcome.applied, read=cached)
        self.counters.writes += outcome.writes
        for kind, reason, message in outcome.events:
            try:
                # kopf.event walks any mapping (dicts.walk), though its annotation names kopf.Body.
                kopf.event(dict(body), type=kind, reason=reason, message=message)  # type: ignore[arg-type]
            except LookupError:  # no kopf handler has run yet in this process: log it instead
                log.warning("%s %s on %s/%s: %s", kind, reason, *key, message)
        return outcome
