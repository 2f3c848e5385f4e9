"""Peering for the operator's own triggers: pause them whenever kopf pauses.

kopf peering keeps one operator working when several run (say, the in-cluster one and a
developer's on a laptop): each writes a keep-alive into the status of a `ClusterKopfPeering`
(or, for an operator scoped to namespaces, a `KopfPeering` in each) named `aistack`, and an
operator that sees a live peer of higher priority pauses; peers of equal priority all pause.
kopf pauses only its own watchers, though. Reconciles that a child change or the drift pass
starts are this operator's, so `PeeringWatch` reads the same object and applies the same rule
(`blocking_peers`) to gate them. It shares kopf's identity (passed to kopf explicitly), so it
never mistakes its own keep-alive for a peer.

As in kopf, peering is optional unless a name was asked for (`--peering NAME`, kopf's own flag;
the install passes it). Optional: where the peering CRD or object does not exist, the operator
works without peering and warns once how to install it (a cluster without kopf's CRDs would
otherwise pause it forever); once the object exists, its peers count. Named (mandatory): the
operator stays paused until the object has been read, and while it or its CRD is missing, and
says which object to create.
"""

from __future__ import annotations

import asyncio
import datetime
import getpass
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client import Configuration

from aistack.api.conventions import PEERING_NAME
from aistack.operator.kube import Kind
from aistack.operator.machinery.listwatch import ListWatch, NotServed

log = logging.getLogger("aistack.operator.peering")
CLUSTER_PEERING = Kind(api_version="kopf.dev/v1", kind="ClusterKopfPeering", plural="clusterkopfpeerings")
NAMESPACED_PEERING = Kind(api_version="kopf.dev/v1", kind="KopfPeering", plural="kopfpeerings")
DEFAULT_LIFETIME = 60
INSTALL = "kubectl apply -f deploy/operator/peering.yaml"
"""Installs both peering CRDs and the ClusterKopfPeering `aistack`."""
CLUSTER = ""
"""The scope key of the cluster-wide peering."""


def own_identity() -> str:
    """This operator's name among its peers: the pod's name where the Deployment passes it
    (`POD_ID`, as kopf reads it), else user@host, the start time and a random suffix."""
    pod = os.environ.get("POD_ID")
    if pod:
        return pod
    started = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
    return f"{getpass.getuser()}@{socket.gethostname()}/{started}/{secrets.token_hex(2)}"


@dataclass(frozen=True, kw_only=True)
class PeeringOptions:
    name: str = PEERING_NAME
    priority: int = 0
    mandatory: bool = False
    """A named peering was asked for (`--peering NAME`): paused while the peering object is
    missing. Otherwise a missing object or CRD means working without peering (one warning)."""
    recheck: float = 10.0
    """Seconds between listings while the peering CRD is not served (is it installed yet?)."""


@dataclass(frozen=True)
class Peer:
    identity: str
    priority: int
    deadline: datetime.datetime
    """When its keep-alive runs out: it counts as gone from then on."""


def peers(status: Mapping[str, Any]) -> list[Peer]:
    """The peers in a peering object's status (kopf's layout: identity -> priority, lifetime,
    lastseen). An entry that cannot be read counts as a live peer of priority 0 seen now: it
    pauses an operator of priority 0 (the safe side), never one above."""
    now = datetime.datetime.now(datetime.UTC)
    out = []
    for identity, info in (status or {}).items():
        info = info if isinstance(info, Mapping) else {}
        try:
            priority = int(info.get("priority") or 0)
            lifetime_field = info.get("lifetime")
            lifetime = int(lifetime_field if lifetime_field is not None else DEFAULT_LIFETIME)
            seen = info.get("lastseen")
            lastseen = datetime.datetime.fromisoformat(seen) if seen else now
        except (TypeError, ValueError):
            priority, lifetime, lastseen = 0, DEFAULT_LIFETIME, now
        if lastseen.tzinfo is None:
            lastseen = lastseen.replace(tzinfo=datetime.UTC)
        out.append(Peer(identity=str(identity), priority=priority,
                        deadline=lastseen + datetime.timedelta(seconds=lifetime)))
    return out


def blocking_peers(status: Mapping[str, Any], *, identity: str, priority: int,
                   now: datetime.datetime | None = None) -> list[Peer]:
    """The live peers that pause an operator of `priority`: kopf's rule, a higher priority
    wins and an equal one pauses both (two operators would fight over the same objects)."""
    now = now or datetime.datetime.now(datetime.UTC)
    return [p for p in peers(status) if p.identity != identity and p.deadline > now
            and p.priority >= priority]


class PeeringWatch(ListWatch[str]):
    """Follows the peering object(s); `active` is set while no peer outranks this operator.
    `on_resume` is called on each pause -> work transition."""

    def __init__(self, *, configuration: Configuration, namespaces: Sequence[str], options: PeeringOptions,
                 identity: str, on_resume: Callable[[], None] = lambda: None) -> None:
        kind = NAMESPACED_PEERING if namespaces else CLUSTER_PEERING
        super().__init__(configuration=configuration, namespaces=namespaces, kinds=[kind])
        self.options, self.identity, self.on_resume = options, identity, on_resume
        self.scopes: list[str] = list(namespaces) or [CLUSTER]
        self.statuses: dict[str, Mapping[str, Any]] = {}
        """The peering's status by namespace (`CLUSTER` for the cluster-wide one)."""
        self.unserved: set[str] = set()
        """The scopes whose last listing answered 404: the peering CRD is not installed."""
        self.active = asyncio.Event()
        self._recheck: asyncio.TimerHandle | None = None
        self._told: str | None = None

    async def stop(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()
        await super().stop()

    async def _list(self, kind: Kind, namespace: str | None) -> str:
        """List; while the CRD is not served, say so (`evaluate`) and list again every
        `recheck` seconds, quietly: a missing CRD is a state to report once, not a failure."""
        scope = namespace or CLUSTER
        while True:
            try:
                version = await super()._list(kind, namespace)
                break
            except NotServed:
                log.debug("peering: %s not served in %s; listing again in %ss", kind.plural,
                          namespace or "the cluster", self.options.recheck)
                self.unserved.add(scope)
                self.statuses.pop(scope, None)
                self.evaluate()
                await asyncio.sleep(self.options.recheck)
        self.unserved.discard(scope)
        self.evaluate()  # also when the listing found no peering object at all
        return version

    def _key(self, kind: Kind, obj: Mapping[str, Any]) -> str | None:
        meta = obj.get("metadata") or {}
        return (meta.get("namespace") or CLUSTER) if meta.get("name") == self.options.name else None

    def _held(self, kind: Kind, namespace: str | None) -> list[str]:
        return [scope for scope in self.statuses if scope == (namespace or CLUSTER)]

    def _keep(self, key: str, obj: Mapping[str, Any]) -> None:
        status = obj.get("status")
        self.statuses[key] = status if isinstance(status, Mapping) else {}
        self.evaluate()

    def _drop(self, key: str) -> None:
        self.statuses.pop(key, None)
        self.evaluate()

    def evaluate(self) -> None:
        """Pause or resume from what the peering objects say now; look again when the first
        blocking peer's keep-alive runs out (a peer killed without a goodbye)."""
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        missing = [scope for scope in self.scopes if scope not in self.statuses]
        blocking = [peer for scope in self.scopes if scope in self.statuses
                    for peer in blocking_peers(self.statuses[scope], identity=self.identity,
                                               priority=self.options.priority)]
        read = {namespace or CLUSTER for _, namespace in self._listed} | self.unserved
        if not set(missing) <= read:
            self.active.clear()  # not read yet: paused, as kopf is, but nothing to say yet
        elif missing and self.options.mandatory:
            kind = self.streams[0][0].kind
            self._pause(f"{self._missing(missing)}; --peering {self.options.name} waits for the {kind} "
                        f"{self.options.name!r} ({self._fix(missing)}, or run with --standalone)")
        elif blocking:  # also where another namespace has no peering object: kopf pauses on any
            self._pause("peers " + ", ".join(f"{p.identity} (priority {p.priority})" for p in blocking))
            soonest = min(p.deadline for p in blocking)
            delay = (soonest - datetime.datetime.now(datetime.UTC)).total_seconds()
            self._recheck = asyncio.get_running_loop().call_later(max(delay, 0) + 0.05, self.evaluate)
        elif missing:
            self._unpeered(f"{self._missing(missing)}: working without peering, so nothing pauses "
                           f"this operator while another one runs ({self._fix(missing)}, or pass "
                           f"--standalone to run without peering and without this warning)")
        else:
            if not self.active.is_set():
                log.info("peering: no peer outranks this operator (%s); working", self.identity)
                self._resume()
            elif self._told is not None:  # was working without peering
                log.info("peering: %s %r found; peers of higher or equal priority pause this operator "
                         "from now on", self.streams[0][0].kind, self.options.name)
            self._told = None

    def _missing(self, scopes: Sequence[str]) -> str:
        """What is missing: the CRD (which serves every scope), else the object in `scopes`."""
        kind = self.streams[0][0]
        if any(scope in self.unserved for scope in scopes):
            return f"no {kind.kind} CRD ({kind.plural}.{kind.api_version.split('/')[0]}) installed"
        return f"no {kind.kind} {self.options.name!r} in {', '.join(s or 'the cluster' for s in scopes)}"

    def _fix(self, scopes: Sequence[str]) -> str:
        """How to make the missing peering exist: `INSTALL` where it installs what is missing."""
        kind = self.streams[0][0]
        if kind == CLUSTER_PEERING and self.options.name == PEERING_NAME:
            return INSTALL
        create = f"create {kind.kind} {self.options.name!r}" + (" in each namespace"
                                                                if kind != CLUSTER_PEERING else "")
        if any(scope in self.unserved for scope in scopes):
            return f"install its CRD with {INSTALL}, then {create}"
        return create

    def _pause(self, why: str) -> None:
        if self.active.is_set() or self._told != why:
            log.warning("peering: paused, %s", why)
        self._told = why
        self.active.clear()

    def _unpeered(self, why: str) -> None:
        """Optional peering without a peering object: work, and warn once per reason."""
        if self._told != why:
            log.warning("peering: %s", why)
        self._told = why
        if not self.active.is_set():
            self._resume()

    def _resume(self) -> None:
        self.active.set()
        self.on_resume()
