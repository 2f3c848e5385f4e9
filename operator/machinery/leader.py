"""Leader election between operator replicas: a `coordination.k8s.io/v1` Lease.

kopf peering is not leader election: it pauses operators that a peer of *higher* priority
outranks, and pauses *all* operators of equal priority (two replicas of one Deployment would
both stop). So replicas take a Lease first, as controller-runtime's `--leader-elect` does: one
holds it and runs kopf; the others wait, each reading the Lease every `retry_period` and taking
it once its holder has not renewed it for `duration` seconds as this replica measures time (a
skewed clock elsewhere does not matter). A leader that cannot renew within `renew_deadline`
stops; its process exits non-zero and restarts as a follower. On a clean stop the leader
releases the Lease, so a rolling update hands over at once. Every write carries the
resourceVersion it read: two candidates racing for the same Lease cannot both win.

Peering stays on beside it: it still pauses the leader for a developer's operator of higher
priority.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from aistack.api.conventions import LEASE_NAME
from aistack.operator.kube import MERGE_PATCH, ApiError, Kind, Kube

log = logging.getLogger("aistack.operator.leader")
LEASE = Kind(api_version="coordination.k8s.io/v1", kind="Lease", plural="leases")
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True, kw_only=True)
class LeaseOptions:
    namespace: str
    name: str = LEASE_NAME
    duration: float = 15.0
    """Seconds a Lease not renewed stays its holder's (client-go's default)."""
    renew_deadline: float = 10.0
    """Seconds a leader keeps trying to renew before it gives up leading."""
    retry_period: float = 2.0
    """Seconds between tries (to acquire, or to renew)."""

    def __post_init__(self) -> None:
        if not self.namespace:
            raise ValueError("leader election: namespace must not be empty")
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError("leader election: need 0 < retry_period < renew_deadline < duration, got "
                             f"{self.retry_period} / {self.renew_deadline} / {self.duration}")


def lease_namespace(explicit: str | None = None) -> str | None:
    """Where the Lease lives: as given, else this pod's namespace (`POD_NAMESPACE`, or the
    service account's namespace file), else None."""
    if explicit:
        return explicit
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _micro_time() -> str:
    """Now, as a Kubernetes MicroTime."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElection:
    """One candidate for the Lease. `acquire()` returns once this replica leads; `keep()`
    renews until it cannot, and returns when leadership is lost; `release()` hands it back."""

    def __init__(self, kube: Kube, options: LeaseOptions, identity: str) -> None:
        self.kube, self.options, self.identity = kube, options, identity
        self.observed: tuple[Any, ...] | None = None
        self.observed_at = 0.0
        self.leading = False

    # -- one try (blocking: run in a thread) ---------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        path = LEASE.path(self.options.namespace, self.options.name)
        try:
            lease = self.kube.request("GET", path)
        except ApiError as err:
            if err.status != 404:
                log.warning("leader election: reading Lease %s/%s failed: %s", self.options.namespace,
                            self.options.name, err)
                return False
            return self._create()
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"),
                  spec.get("leaseTransitions"))
        now = time.monotonic()
        if record != self.observed:
            self.observed, self.observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.options.duration)
        if holder and holder != self.identity and now < self.observed_at + duration:
            return False  # someone else holds it and renewed it recently enough
        stamp = _micro_time()
        new_spec: dict[str, Any] = {"holderIdentity": self.identity, "renewTime": stamp,
                                    "leaseDurationSeconds": int(self.options.duration)}
        if holder != self.identity:
            new_spec.update(acquireTime=stamp, leaseTransitions=int(spec.get("leaseTransitions") or 0) + 1)
        return self._patch(lease, new_spec)

    def release(self) -> None:
        """Hand the Lease back (holder cleared), if this replica still holds it."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = self.kube.request("GET", LEASE.path(self.options.namespace, self.options.name))
        except ApiError as err:
            log.warning("leader election: could not release the Lease: %s", err)
            return
        if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
            self._patch(lease,
                        {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": _micro_time()})

    def _create(self) -> bool:
        stamp = _micro_time()
        body = {"apiVersion": LEASE.api_version, "kind": LEASE.kind,
                "metadata": {"name": self.options.name, "namespace": self.options.namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.options.duration),
                         "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0}}
        try:
            self.kube.request("POST", LEASE.path(self.options.namespace), body=body)
        except ApiError as err:
            if err.status != 409:  # 409: another candidate created it first
                log.warning("leader election: creating the Lease failed: %s", err)
            return False
        return True

    def _patch(self, lease: dict[str, Any], spec: dict[str, Any]) -> bool:
        meta = lease.get("metadata") or {}
        body = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "spec": spec}
        try:
            self.kube.request("PATCH", LEASE.path(self.options.namespace, self.options.name), body=body,
                              content_type=MERGE_PATCH)
        except ApiError as err:
            if err.status != 409:  # 409: it changed since we read it; look again next time
                log.warning("leader election: writing the Lease failed: %s", err)
            return False
        return True

    # -- the loops -----------------------------------------------------------------------------
    async def acquire(self) -> None:
        log.info("leader election: %s waits for Lease %s/%s", self.identity, self.options.namespace,
                 self.options.name)
        while not await asyncio.to_thread(self.try_acquire_or_renew):
            await asyncio.sleep(self.options.retry_period)
        self.leading = True
        log.info("leader election: %s leads", self.identity)

    async def keep(self) -> None:
        """Renew every `retry_period`; return once no renewal succeeded for `renew_deadline`."""
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.options.retry_period)
            if await asyncio.to_thread(self.try_acquire_or_renew):
                renewed = time.monotonic()
            elif time.monotonic() - renewed >= self.options.renew_deadline:
                self.leading = False
                log.error("leader election: %s could not renew the Lease for %ss; stepping down",
                          self.identity, self.options.renew_deadline)
                return
