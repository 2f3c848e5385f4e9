"""kopf glue: when to reconcile. What a reconcile does lives in `reconcile.py`.

Triggers: create/update/resume of an AIStack; any change of one of its children (watched by
the light `watch.ChildCache`, one stream per kind, so that a reconcile reads its children from
memory and a no-op resync makes no API call); a periodic drift check as a safety net (one task
for all stacks). Runs for one stack are serialised and coalesced by `machinery.queue.WorkQueue`:
a burst of child events gives one more reconcile, not one each. AIStacks themselves go through
kopf (handlers, finalizer), with a bounded pool of per-object workers; reconciles that kopf did
not start read the stack's body from `watch.StackCache` (not a kopf index: see there why).
While kopf peering pauses the operator, the triggers kopf does not start (child changes, drift
checks) wait too (`machinery.peering.PeeringWatch`). `runner.Runner` holds what the operator
remembers of each stack between reconciles.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Sequence
from typing import Any

import kopf
from kubernetes.client import ApiClient, Configuration

from aistack.api.v1alpha1 import GROUP, PLURAL, VERSION
from aistack.operator.kube import ApiError, Kube
from aistack.operator.machinery.listwatch import ListWatch
from aistack.operator.machinery.peering import PeeringWatch
from aistack.operator.options import OperatorOptions
from aistack.operator.runner import Runner
from aistack.operator.watch import ChildCache, StackCache, plain_stack

log = logging.getLogger("aistack.operator")
FINALIZER = "aistack.dev/finalizer"
WORKER_LIMIT = 64


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


def build_registry(options: OperatorOptions, *,
                   namespaces: Sequence[str] = ()) -> tuple[kopf.OperatorRegistry, Runner]:
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
        caches: list[ListWatch[Any]] = [cache, stacks, *([peering] if peering else [])]
        for watched in caches:
            if not watched.started:
                await watched.start()
        try:
            for watched in (cache, stacks):
                await watched.wait_synced(options.sync_timeout)
        except TimeoutError as err:
            raise kopf.TemporaryError("listing the children and stacks timed out; retrying",
                                      delay=options.retry_delay) from err
        runner.queue.start_drift(lambda: list(stacks.bodies), interval=options.drift_interval)

    @kopf.on.cleanup(id="children", registry=registry)
    async def stop_children(**_: Any) -> None:
        runner.queue.stop_drift()
        await asyncio.gather(cache.stop(), stacks.stop(), *([peering.stop()] if peering else []))
        await asyncio.to_thread(runner.close)

    # kopf's handler protocol allows a cluster-scoped body (namespace None); an AIStack is
    # namespaced, so None never comes, and is filed as StackCache files it.
    async def converge(body: kopf.Body, namespace: str | None, name: str, **kwargs: Any) -> None:
        runner.queue.context = contextvars.copy_context()
        # kopf with optional peering (no --peering) works until it has read the peering object;
        # a peer that outranks this operator must not see it reconcile meanwhile.
        await runner.queue.unpaused()
        key = (namespace or "default", name)
        try:
            outcome = await runner.converge(key, plain_stack(body))
        except ApiError as err:
            raise kopf.TemporaryError(f"API call failed: {err}", delay=runner.queue.backoff(key)) from err
        if outcome.retry:
            runner.queue.retry(key)
        else:
            runner.queue.succeeded(key)

    kopf.on.resume(GROUP, VERSION, PLURAL, id="resume", registry=registry)(converge)
    kopf.on.create(GROUP, VERSION, PLURAL, id="create", registry=registry)(converge)
    kopf.on.update(GROUP, VERSION, PLURAL, id="update", registry=registry)(converge)

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="cleanup", registry=registry, retries=10)
    async def delete(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
        try:
            message = await runner.delete((namespace or "default", name), plain_stack(body))
        except Exception as err:  # Qdrant or the API down: the finalizer keeps the stack until done
            raise kopf.TemporaryError(f"cleanup failed, retrying: {err}",
                                      delay=runner.queue.backoff((namespace or "default", name))) from err
        log.info("AIStack %s/%s deleted: %s", namespace, name, message)

    @kopf.on.probe(id="reconciles", registry=registry)
    def reconciles(**_: Any) -> dict[str, int]:
        return {"runs": runner.counters.runs, "writes": runner.counters.writes,
                "errors": runner.counters.errors,
                "renders": runner.renders.misses, "renders_reused": runner.renders.hits}

    return registry, runner


def connection_info(configuration: Configuration) -> kopf.ConnectionInfo:
    """kopf's connection from the same Configuration the operator's own client uses."""
    token = (configuration.api_key or {}).get("authorization") or (configuration.api_key
                                                                   or {}).get("BearerToken")
    if token and token.lower().startswith("bearer "):
        token = token[7:]
    return kopf.ConnectionInfo(
        server=configuration.host, ca_path=configuration.ssl_ca_cert, insecure=not configuration.verify_ssl,
        token=token or None, certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )

