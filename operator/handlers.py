"""kopf glue: when to reconcile. What a reconcile does lives in `reconcile.py`.

Triggers: create/update/resume of an AIStack; any change of one of its children (watched by
the light `watch.ChildCache`, one stream per kind, so that a reconcile reads its children from
memory and a no-op resync makes no API call); a periodic drift check as a safety net (one task
for all stacks). Runs for one stack are serialised and coalesced: a burst of child events
gives one more reconcile, not one each. AIStacks themselves go through kopf (handlers,
finalizer), with a bounded pool of per-object workers; reconciles that kopf did not start
read the stack's body from `watch.StackCache` (not a kopf index: see there why). While kopf
peering pauses the operator, the triggers kopf does not start (child changes, drift checks)
wait too (`peering.PeeringWatch`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.client import ApiClient, Configuration

from aistack.api.v1alpha1 import GROUP, PLURAL, VERSION
from aistack.operator.apply import ApplyResult, ChildKey, summarize
from aistack.operator.collection import QdrantFactory, default_qdrant_factory
from aistack.operator.kube import ApiError, Kube
from aistack.operator.leader import LeaseOptions
from aistack.operator.peering import PeeringOptions, PeeringWatch, own_identity
from aistack.operator.reconcile import Outcome, RenderMemo, finalize, reconcile
from aistack.operator.watch import Change, ChildCache, StackCache, plain_stack
from aistack.api.images import package_version

log = logging.getLogger("aistack.operator")
FINALIZER = "aistack.dev/finalizer"
StackKey = tuple[str, str]  # (namespace, name)
WORKER_LIMIT = 64


@dataclass(frozen=True, kw_only=True)
class OperatorOptions:
    """Everything the handlers need from outside; tests swap the Qdrant factory and timings."""

    configuration: Configuration
    qdrant_factory: QdrantFactory = default_qdrant_factory
    version: str = field(default_factory=package_version)
    drift_interval: float = 300.0
    """Seconds between full re-checks of a stack (child changes are handled at once)."""
    retry_delay: float = 10.0
    """Seconds before retrying a reconcile that could not finish (API or Qdrant down)."""
    debounce: float = 0.1
    """Seconds to gather a burst of child events into one reconcile."""
    sync_timeout: float = 60.0
    """Seconds the startup waits for the first listing of the children before retrying."""
    identity: str = field(default_factory=own_identity)
    """This process among its peers and Lease candidates (the pod's name in a cluster)."""
    peering: PeeringOptions | None = None
    """kopf peering (name, priority); None: standalone, no guard against a second operator."""
    leader: LeaseOptions | None = None
    """Leader election between replicas (a Lease); None: this process runs at once."""


@dataclass
class Counters:
    """Reconcile counts, for the liveness probe and the benchmark."""

    runs: int = 0
    writes: int = 0
    errors: int = 0


class Runner:
    """Serialises reconciles per stack and coalesces triggers that arrive meanwhile."""

    def __init__(self, *, kube: Kube, options: OperatorOptions, cache: ChildCache, stacks: StackCache,
                 peering: PeeringWatch | None = None) -> None:
        self.kube, self.options, self.cache, self.stacks, self.peering = kube, options, cache, stacks, peering
        self.context: contextvars.Context | None = None
        """The context of a kopf handler: reconciles started by child changes run in it, so that
        `kopf.event` finds kopf's event queue there too."""
        self.locks: dict[StackKey, asyncio.Lock] = {}
        self.pending: set[StackKey] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.counters = Counters()
        self.renders = RenderMemo()
        self.drift_task: asyncio.Task[None] | None = None
        # The status last written and the newest generation seen, per stack: a cached body
        # lags behind this process's own writes while kopf is busy with the same object.
        self.known_status: dict[StackKey, dict[str, Any]] = {}
        self.generations: dict[StackKey, int] = {}
        # Stacks being deleted, by uid: a cached body may not show the deletion yet, and a
        # reconcile then would recreate children or the collection the finalizer just removed.
        self.deleting: set[str] = set()
        # resourceVersions of this process's own writes to children: their watch events are
        # echoes of what a reconcile already accounted for, not a reason for another one.
        self.echoes: dict[tuple[str, str, str], str] = {}
        # Children as this process last wrote them, until the watch cache catches up: with
        # thousands of children the watch lags behind, and a reconcile reading the cache alone
        # would create again what it just created (a 409 and a GET each) or patch it again.
        # Per child: (the resourceVersion the cache held when we wrote, our written summary).
        self.written: dict[StackKey, dict[ChildKey, tuple[str | None, dict[str, Any]]]] = {}

    async def run(self, key: StackKey, body: Mapping[str, Any]) -> Outcome:
        async with self.locks.setdefault(key, asyncio.Lock()):
            meta = body.get("metadata", {})
            if meta.get("uid") in self.deleting or meta.get("deletionTimestamp"):
                return Outcome()
            generation = int(meta.get("generation") or 0)
            if generation < self.generations.get(key, 0):
                return Outcome()  # a stale cached body: a newer spec was already applied
            self.generations[key] = generation
            cached = self.cache.children(key)
            live = self.with_own_writes(key, cached)
            self.counters.runs += 1
            try:
                outcome = await asyncio.to_thread(
                    reconcile, body, kube=self.kube, qdrant=self.options.qdrant_factory,
                    version=self.options.version, live=live, known_status=self.known_status.get(key),
                    renderer=self.renders)
            except ApiError:
                self.counters.errors += 1
                raise
            if outcome.status:
                self.known_status[key] = outcome.status
            if outcome.applied is not None:
                self.remember_writes(key, cached, outcome.applied)
        self.counters.writes += outcome.writes
        for kind, reason, message in outcome.events:
            try:
                kopf.event(dict(body), type=kind, reason=reason, message=message)
            except LookupError:  # no kopf handler has run yet in this process: log it instead
                log.warning("%s %s on %s/%s: %s", kind, reason, *key, message)
        return outcome

    def with_own_writes(self, key: StackKey, cached: dict[ChildKey, dict[str, Any]]) -> dict[ChildKey, dict[str, Any]]:
        """The watch cache, with this process's newer writes laid over it. A written child
        leaves the overlay as soon as the cache holds any other version than it held at the
        write (our write's echo, or a later change by someone else: the cache is then newer)."""
        if key not in self.written:
            return cached
        for child in list(self.written[key]):
            self._cache_holds(key, child, (cached.get(child) or {}).get("metadata", {}).get("resourceVersion"))
        return {**cached, **{child: summary for child, (_, summary) in self.written.get(key, {}).items()}}

    def _cache_holds(self, key: StackKey, child: ChildKey, version: str | None) -> None:
        """The cache holds `version` of `child` (None: none): the overlay entry goes once that
        differs from what the cache held at our write (see `with_own_writes`)."""
        entry = (self.written.get(key) or {}).get(child)
        if entry is not None and entry[0] != version:
            self._forget_write(key, child)

    def _forget_write(self, key: StackKey, child: ChildKey) -> None:
        written = self.written.get(key) or {}
        written.pop(child, None)
        if not written:
            self.written.pop(key, None)

    def remember_writes(self, key: StackKey, cached: Mapping[ChildKey, Mapping[str, Any]], applied: ApplyResult) -> None:
        for child in (*applied.created, *applied.patched):
            body = applied.live.get(child) or {}
            version = body.get("metadata", {}).get("resourceVersion")
            if version:
                self.echoes[(key[0], child[0], child[1])] = version
                base = (cached.get(child) or {}).get("metadata", {}).get("resourceVersion")
                self.written.setdefault(key, {})[child] = (base, summarize(body))
        for child in applied.deleted:
            self._forget_write(key, child)

    def is_echo(self, namespace: str, kind: str, name: str, version: str | None) -> bool:
        return version is not None and self.echoes.get((namespace, kind, name)) == version

    def child_changed(self, change: Change) -> None:
        """A child was added, changed or deleted: reconcile its stack soon, unless the change is
        the echo of this process's own write."""
        namespace, stack = change.stack
        child = (change.kind, change.name)
        if change.version is None:  # deleted: whatever we wrote of it no longer stands
            self._forget_write(change.stack, child)
        else:
            self._cache_holds(change.stack, child, change.version)
        if change.version is not None and self.is_echo(namespace, change.kind, change.name, change.version):
            return
        if self.stacks.get(change.stack) is not None:
            self.schedule(change.stack, delay=self.options.debounce)

    async def drift(self) -> None:
        """Every stack re-checked once per drift interval, the checks spread evenly over it: one
        task for all stacks, where a kopf timer would hold a daemon task per stack."""
        while True:
            keys = list(self.stacks.bodies)
            if not keys:
                await asyncio.sleep(self.options.drift_interval)
                continue
            step = self.options.drift_interval / len(keys)
            for key in keys:
                await asyncio.sleep(step)
                await self.unpaused()
                self.schedule(key)  # a stack deleted meanwhile is skipped when its turn comes

    def schedule(self, key: StackKey, *, delay: float = 0) -> None:
        if key in self.pending:
            return
        task = asyncio.create_task(self._later(key, delay), context=self.context)
        self.pending.add(key)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def unpaused(self) -> None:
        """Return once peering lets this operator work (at once when standalone)."""
        if self.peering is not None:
            await self.peering.active.wait()

    def resumed(self) -> None:
        """Back from a pause: another operator may have written statuses meanwhile, so the
        status this process last wrote is no longer known to stand."""
        self.known_status.clear()

    async def _later(self, key: StackKey, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.unpaused()  # held while paused, still pending: a burst stays one reconcile
        self.pending.discard(key)
        body = self.stacks.get(key)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return
        try:
            outcome = await self.run(key, body)
        except ApiError as err:
            log.warning("reconcile of %s/%s failed, retrying in %ss: %s", *key, self.options.retry_delay, err)
            self.schedule(key, delay=self.options.retry_delay)
            return
        if outcome.retry:
            self.schedule(key, delay=self.options.retry_delay)


def build_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.WARNING  # only our own Events; kopf's INFO chatter would be writes
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10]
    # A bounded pool of per-object workers, each gone soon after its object's last event: a
    # burst of a thousand new stacks neither holds a thousand tasks nor more reconciles in
    # flight than the threads can run (which is why no kopf index is used: see watch.py).
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = 0.5
    return settings


def build_registry(options: OperatorOptions, *, namespaces: Sequence[str] = ()) -> tuple[kopf.OperatorRegistry, Runner]:
    """A fresh registry (no module-level state: each operator start, and each test, has its own).
    `namespaces`: the ones the operator watches (all when empty), for the children's streams too."""
    registry = kopf.OperatorRegistry()
    cache = ChildCache(configuration=options.configuration, namespaces=namespaces)
    stacks = StackCache(configuration=options.configuration, namespaces=namespaces)
    peering = None if options.peering is None else PeeringWatch(
        configuration=options.configuration, namespaces=namespaces, options=options.peering,
        identity=options.identity)
    runner = Runner(kube=Kube(ApiClient(options.configuration)), options=options, cache=cache, stacks=stacks,
                    peering=peering)
    cache.on_change = runner.child_changed
    if peering is not None:
        peering.on_resume = runner.resumed

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(options.configuration)

    @kopf.on.startup(id="children", registry=registry)
    async def watch_children(**_: Any) -> None:
        """Before any AIStack handler runs: the caches are listed, so that the first reconcile
        of each stack sees what exists (and creates nothing twice). The peering watch starts
        too, but is not waited for: until it has read the peering, reconciles are held."""
        for watched in (cache, stacks, *([peering] if peering else [])):
            if not watched.started:
                await watched.start()
        try:
            for watched in (cache, stacks):
                await watched.wait_synced(options.sync_timeout)
        except TimeoutError as err:
            raise kopf.TemporaryError("listing the children and stacks timed out; retrying",
                                      delay=options.retry_delay) from err
        if runner.drift_task is None:
            runner.drift_task = asyncio.create_task(runner.drift(), name="drift checks")

    @kopf.on.cleanup(id="children", registry=registry)
    async def stop_children(**_: Any) -> None:
        if runner.drift_task is not None:
            runner.drift_task.cancel()
        await asyncio.gather(cache.stop(), stacks.stop(), *([peering.stop()] if peering else []))

    async def converge(body: kopf.Body, namespace: str, name: str, **kwargs: Any) -> None:
        runner.context = contextvars.copy_context()
        # kopf with optional peering (no --peering) works until it has read the peering object;
        # a peer that outranks this operator must not see it reconcile meanwhile.
        await runner.unpaused()
        try:
            outcome = await runner.run((namespace, name), plain_stack(body))
        except ApiError as err:
            raise kopf.TemporaryError(f"API call failed: {err}", delay=options.retry_delay) from err
        if outcome.retry:
            runner.schedule((namespace, name), delay=options.retry_delay)

    kopf.on.resume(GROUP, VERSION, PLURAL, id="resume", registry=registry)(converge)
    kopf.on.create(GROUP, VERSION, PLURAL, id="create", registry=registry)(converge)
    kopf.on.update(GROUP, VERSION, PLURAL, id="update", registry=registry)(converge)

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="cleanup", registry=registry, retries=10)
    async def delete(body: kopf.Body, namespace: str, name: str, uid: str, **_: Any) -> None:
        runner.deleting.add(uid)
        async with runner.locks.setdefault((namespace, name), asyncio.Lock()):  # let a running reconcile end
            try:
                message = await asyncio.to_thread(finalize, plain_stack(body), kube=runner.kube,
                                                  qdrant=options.qdrant_factory, version=options.version)
            except Exception as err:  # Qdrant or the API down: the finalizer keeps the stack until done
                raise kopf.TemporaryError(f"cleanup failed, retrying: {err}", delay=options.retry_delay) from err
        for table in (runner.known_status, runner.generations, runner.written):
            table.pop((namespace, name), None)
        runner.renders.forget((namespace, name))
        for echo in [e for e in runner.echoes if e[0] == namespace and e[2].startswith(f"{name}-")]:
            runner.echoes.pop(echo, None)
        log.info("AIStack %s/%s deleted: %s", namespace, name, message)

    @kopf.on.probe(id="reconciles", registry=registry)
    def reconciles(**_: Any) -> dict[str, int]:
        return {"runs": runner.counters.runs, "writes": runner.counters.writes, "errors": runner.counters.errors,
                "renders": runner.renders.misses, "renders_reused": runner.renders.hits}

    return registry, runner


def connection_info(configuration: Configuration) -> kopf.ConnectionInfo:
    """kopf's connection from the same Configuration the operator's own client uses."""
    token = (configuration.api_key or {}).get("authorization") or (configuration.api_key or {}).get("BearerToken")
    if token and token.lower().startswith("bearer "):
        token = token[7:]
    return kopf.ConnectionInfo(
        server=configuration.host, ca_path=configuration.ssl_ca_cert, insecure=not configuration.verify_ssl,
        token=token or None, certificate_path=configuration.cert_file, private_key_path=configuration.key_file,
    )

