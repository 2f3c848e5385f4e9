"""A harness for running the real operator against the emulated API server: used by the
end-to-end tests and by `bench/operator.py`. Needs the `test` extra (kmock)."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from kubernetes.client import ApiClient, Configuration
from qdrant_client import QdrantClient

from aistack.api.conventions import LABEL_INSTANCE, PEERING_NAME
from aistack.testing.emulator import CHILD_PLURALS, EmulatorThread
from aistack.operator.handlers import build_registry, build_settings
from aistack.operator.kube import AISTACK, MERGE_PATCH, Kube
from aistack.operator.machinery.leader import LeaseOptions
from aistack.operator.machinery.peering import CLUSTER_PEERING, PeeringOptions, own_identity
from aistack.operator.options import OperatorOptions
from aistack.operator.reconcile import parse_and_render, stack_document
from aistack.operator.run import serve
from aistack.operator.runner import Runner


def wait_for(check: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until `check()` is truthy; raise TimeoutError naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last value: {value!r}")


E2E_VERSION = "0.0.0-e2e"
"""The operator version of the test harness (the image tag its renders carry)."""


class QdrantPool:
    """One local-mode Qdrant per URL, as if each were a server (the operator's client factory).

    Each call is a client connecting to that "server": `connects` and `closes` count them per URL,
    and closing one leaves the server (the in-memory Qdrant) running, as a real server would."""

    def __init__(self) -> None:
        self.clients: dict[str, QdrantClient] = {}
        self.connects: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, url: str, api_key: str | None) -> QdrantClient:
        with self.lock:
            if url not in self.clients:
                self.clients[url] = QdrantClient(":memory:")
            self.connects[url] += 1
            return cast(QdrantClient, _Connection(self, url))


class _Connection:
    """A client of a `QdrantPool` server: its calls go to the server; `close()` only counts."""

    def __init__(self, pool: QdrantPool, url: str) -> None:
        self._pool, self._url = pool, url

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool.clients[self._url], name)

    def close(self) -> None:
        with self._pool.lock:
            self._pool.closes[self._url] += 1


class Cluster:
    """The emulated API server plus a client, as a user with kubectl would have."""

    def __init__(self, thread: EmulatorThread) -> None:
        self.thread = thread
        self.emulator = thread.emulator
        self.configuration = Configuration()
        self.configuration.host = thread.url
        self.kube = Kube(ApiClient(self.configuration))

    def add_namespace(self, name: str) -> None:
        self.thread.call(self.emulator.add_namespace, name)

    def apply_stack(self, doc: dict[str, Any]) -> dict[str, Any]:
        return self.kube.create(AISTACK, doc["metadata"].get("namespace", "default"), copy.deepcopy(doc))

    def stack(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get(AISTACK, namespace, name)

    def children(self, namespace: str, name: str) -> dict[tuple[str, str], dict[str, Any]]:
        out = {}
        for plural in sorted(CHILD_PLURALS):
            for obj in self.emulator.all(plural):
                meta = obj["metadata"]
                if meta.get("namespace") == namespace and (
                        meta.get("labels") or {}).get(LABEL_INSTANCE) == name:
                    out[(obj["kind"], meta["name"])] = obj
        return out

    def rendered_keys(self, namespace: str, name: str, *, version: str = E2E_VERSION) -> set[tuple[str, str]]:
        """(kind, name) of every child the operator renders for the stack as it is stored now."""
        body = self.stack(namespace, name)
        return {(m["kind"], m["metadata"]["name"])
                for m in parse_and_render(stack_document(body or {}), version).manifests}

    def peering(self, name: str = PEERING_NAME) -> dict[str, Any] | None:
        return self.emulator.find(CLUSTER_PEERING.plural, None, name)

    def add_peering(self, name: str = PEERING_NAME, status: dict[str, Any] | None = None) -> None:
        """The cluster-wide peering object (as `deploy/operator/peering.yaml` installs it)."""
        body = {"apiVersion": CLUSTER_PEERING.api_version, "kind": CLUSTER_PEERING.kind,
                "metadata": {"name": name}}
        self.kube.request("POST", f"/apis/{CLUSTER_PEERING.api_version}/{CLUSTER_PEERING.plural}",
                          body={**body, **({"status": status} if status else {})})

    def patch_peering(self, status: dict[str, Any], name: str = PEERING_NAME) -> None:
        """A merge patch of its status (None removes a peer), as a peer's keep-alive writes it."""
        self.kube.request("PATCH", f"/apis/{CLUSTER_PEERING.api_version}/{CLUSTER_PEERING.plural}/{name}",
                          body={"status": status}, content_type=MERGE_PATCH)

    def condition(self, namespace: str, name: str, kind: str) -> dict[str, Any] | None:
        stack = self.stack(namespace, name) or {}
        return next((c for c in (stack.get("status") or {}).get("conditions") or [] if c["type"] == kind),
                    None)

    def wait_phase(self, namespace: str, name: str, phase: str, timeout: float = 10.0) -> dict[str, Any]:
        def check() -> Any:
            stack = self.stack(namespace, name)
            return stack if stack and (stack.get("status") or {}).get("phase") == phase else None

        return wait_for(check, timeout=timeout, what=f"{namespace}/{name} in phase {phase}")

    def events(self, namespace: str, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.emulator.all("events")
                if e.get("reason") == reason and e.get("metadata", {}).get("namespace") == namespace]


class OperatorThread:
    """The real operator (kopf with our registry) in a thread, as `kopf.testing.KopfRunner`
    does, so that it never shares an event loop with the test."""

    def __init__(self, cluster: Cluster, qdrant: Callable[[str, str | None], QdrantClient], *,
                 drift_interval: float = 1.0, retry_delay: float = 0.3, namespaces: tuple[str, ...] = (),
                 worker_limit: int | None = None, peering: PeeringOptions | None = None,
                 identity: str | None = None, leader: LeaseOptions | None = None,
                 liveness: str | None = None) -> None:
        """`peering`: take part in kopf peering (the cluster needs the peering object); None:
        standalone. `identity`: this operator's name among its peers (default: generated).
        `leader`: wait for this Lease before running. `liveness`: the probe's URL."""
        self.namespaces, self.worker_limit, self.liveness = namespaces, worker_limit, liveness
        self.options = OperatorOptions(configuration=cluster.configuration, qdrant_factory=qdrant,
                                       version=E2E_VERSION, drift_interval=drift_interval,
                                       retry_delay=retry_delay,
                                       peering=peering, leader=leader,
                                       identity=identity or own_identity())
        self.runner: Runner | None = None
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="aistack-operator", daemon=True)

    def _main(self) -> None:
        registry, self.runner = build_registry(self.options, namespaces=self.namespaces)
        settings = build_settings()
        settings.networking.error_backoffs = [0.2, 0.5, 1]
        if self.worker_limit is not None:
            settings.queueing.worker_limit = self.worker_limit
        try:
            asyncio.run(serve(options=self.options, namespaces=self.namespaces, liveness=self.liveness,
                              registry=registry, settings=settings,
                              stop_flag=self.stop_flag, ready_flag=self.ready_flag))
        except BaseException as err:  # surfaced by start()/stop()
            self.error = err

    def start(self, *, wait_ready: bool = True) -> OperatorThread:
        """Start; with `wait_ready`, return once kopf runs (a Lease follower never gets there)."""
        self.thread.start()
        if wait_ready and not self.ready_flag.wait(30):
            raise RuntimeError(f"operator did not become ready in 30 s: {self.error!r}")
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(30)
        if self.thread.is_alive():
            raise RuntimeError("operator did not stop within 30 s")

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
