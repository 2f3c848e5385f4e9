"""The operator's watch caches, kept in memory for reconciles to read (over `ListWatch`).

`ChildCache`: the operator's children. kopf gives every watched object its own worker task,
memory and handler bookkeeping; that is right for AIStacks (they carry the handlers) but costs
CPU and memory per child, and a stack has a dozen children. Here each kind has one stream (per
watched namespace, or cluster-wide), filtered to objects labelled as managed by aistack, and
the cache keeps only `summarize()`d children grouped by stack: identity, readiness and a
digest of what was applied. It also keeps what this process wrote (`record`) until the
watch shows it, and tells the echoes of those writes from other changes.

`StackCache`: the AIStack bodies (slimmed by `plain_stack`), which reconciles started by a
child change or the drift timer read. It stands in for a kopf index: kopf holds every object's
handlers back until all objects of an indexed kind are indexed, and with a bounded worker pool
(`settings.queueing.worker_limit`) the first workers would then wait, holding their slots, for
objects that can never get one: a deadlock at start-up with more stacks than workers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client import Configuration

from aistack.api.conventions import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY
from aistack.operator.apply import ApplyResult, ChildKey, summarize
from aistack.operator.kube import AISTACK, CHILD_KINDS, Kind
from aistack.operator.machinery.listwatch import ListWatch

StackKey = tuple[str, str]  # (namespace, name)
SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
KOPF_ANNOTATIONS = "kopf.zalando.org/"


@dataclass(frozen=True)
class Change:
    """A child that changed: `version` None when it was deleted."""

    stack: StackKey
    kind: str
    name: str
    version: str | None


class ChildCache(ListWatch[tuple[StackKey, ChildKey]]):
    """Summaries of the managed children, by stack; `on_change` hears of every change but the
    echoes of this process's own writes."""

    selector = SELECTOR

    def __init__(self, *, configuration: Configuration, namespaces: Sequence[str] = (),
                 on_change: Callable[[Change], None] = lambda change: None,
                 kinds: Sequence[Kind] = tuple(CHILD_KINDS.values())) -> None:
        super().__init__(configuration=configuration, namespaces=namespaces, kinds=kinds)
        self.on_change = on_change
        self.by_stack: dict[StackKey, dict[ChildKey, dict[str, Any]]] = {}
        # resourceVersions of this process's own writes to children: their watch events are
        # echoes of what a reconcile already accounted for, not a reason for another one.
        self.echoes: dict[StackKey, dict[ChildKey, str]] = {}
        # Children as this process last wrote them, until the watch catches up: with thousands
        # of children the watch lags behind, and a reconcile reading the cache alone would
        # create again what it just created (a 409 and a GET each) or patch it again. Per
        # child: (the resourceVersion the cache held when the reconcile read it, our summary).
        self.written: dict[StackKey, dict[ChildKey, tuple[str | None, dict[str, Any]]]] = {}

    def children(self, key: StackKey) -> dict[ChildKey, dict[str, Any]]:
        """The children of stack `key` as the watch last saw them."""
        return dict(self.by_stack.get(key) or {})

    def with_own_writes(self, key: StackKey,
                        cached: dict[ChildKey, dict[str, Any]]) -> dict[ChildKey, dict[str, Any]]:
        """`cached` (from `children`), with this process's newer writes laid over it. A written
        child leaves the overlay as soon as the cache holds any other version than it held when
        the write's reconcile read it (our write's echo, or a later change by someone else: the
        cache is then newer)."""
        if key not in self.written:
            return cached
        for child in list(self.written[key]):
            self._holds(key, child, (cached.get(child) or {}).get("metadata", {}).get("resourceVersion"))
        return {**cached, **{child: summary for child, (_, summary) in self.written.get(key, {}).items()}}

    def record(self, key: StackKey, applied: ApplyResult, *,
               read: Mapping[ChildKey, Mapping[str, Any]]) -> None:
        """A reconcile of stack `key` that read `read` (from `children`) wrote `applied`."""
        for child in (*applied.created, *applied.patched):
            body = applied.live.get(child) or {}
            version = body.get("metadata", {}).get("resourceVersion")
            if version:
                self.echoes.setdefault(key, {})[child] = version
                base = (read.get(child) or {}).get("metadata", {}).get("resourceVersion")
                self.written.setdefault(key, {})[child] = (base, summarize(body))
        for child in applied.deleted:
            self._forget_write(key, child)

    def forget(self, key: StackKey) -> None:
        """Stack `key` was deleted: what this process wrote of it no longer matters."""
        self.written.pop(key, None)
        self.echoes.pop(key, None)

    def is_echo(self, change: Change) -> bool:
        return change.version is not None and \
            (self.echoes.get(change.stack) or {}).get((change.kind, change.name)) == change.version

    def _holds(self, key: StackKey, child: ChildKey, version: str | None) -> None:
        """The cache holds `version` of `child` (None: none): the overlay entry goes once that
        differs from what the cache held when its reconcile read it (see `with_own_writes`)."""
        entry = (self.written.get(key) or {}).get(child)
        if entry is not None and entry[0] != version:
            self._forget_write(key, child)

    def _forget_write(self, key: StackKey, child: ChildKey) -> None:
        written = self.written.get(key) or {}
        written.pop(child, None)
        if not written:
            self.written.pop(key, None)

    def _changed(self, change: Change) -> None:
        child = (change.kind, change.name)
        if change.version is None:  # deleted: whatever we wrote of it no longer stands
            self._forget_write(change.stack, child)
        else:
            self._holds(change.stack, child, change.version)
        if not self.is_echo(change):
            self.on_change(change)

    def _key(self, kind: Kind, obj: Mapping[str, Any]) -> tuple[StackKey, ChildKey] | None:
        return _locate(obj)

    def _held(self, kind: Kind, namespace: str | None) -> list[tuple[StackKey, ChildKey]]:
        return [(stack, child) for stack, children in self.by_stack.items()
                if namespace is None or stack[0] == namespace for child in children if child[0] == kind.kind]

    def _keep(self, key: tuple[StackKey, ChildKey], obj: Mapping[str, Any]) -> None:
        stack, child = key
        summary = summarize(obj)
        children = self.by_stack.setdefault(stack, {})
        old = children.get(child)
        version = summary["metadata"].get("resourceVersion")
        children[child] = summary
        if old is None or old["metadata"].get("resourceVersion") != version:
            self._changed(Change(stack=stack, kind=child[0], name=child[1], version=version))

    def _drop(self, key: tuple[StackKey, ChildKey]) -> None:
        stack, child = key
        children = self.by_stack.get(stack) or {}
        if children.pop(child, None) is not None:
            if not children:
                self.by_stack.pop(stack, None)
            self._changed(Change(stack=stack, kind=child[0], name=child[1], version=None))


class StackCache(ListWatch[StackKey]):
    """The AIStacks, as `plain_stack` bodies by (namespace, name)."""

    def __init__(self, *, configuration: Configuration, namespaces: Sequence[str] = ()) -> None:
        super().__init__(configuration=configuration, namespaces=namespaces, kinds=[AISTACK])
        self.bodies: dict[StackKey, dict[str, Any]] = {}

    def get(self, key: StackKey) -> dict[str, Any] | None:
        return self.bodies.get(key)

    def _key(self, kind: Kind, obj: Mapping[str, Any]) -> StackKey | None:
        meta = obj.get("metadata") or {}
        return (meta.get("namespace") or "default", meta["name"]) if meta.get("name") else None

    def _held(self, kind: Kind, namespace: str | None) -> list[StackKey]:
        return [key for key in self.bodies if namespace is None or key[0] == namespace]

    def _keep(self, key: StackKey, obj: Mapping[str, Any]) -> None:
        self.bodies[key] = plain_stack(obj, detach=False)  # parsed here: no one else holds it

    def _drop(self, key: StackKey) -> None:
        self.bodies.pop(key, None)


def plain_stack(body: Mapping[str, Any], *, detach: bool = True) -> dict[str, Any]:
    """A detached deep copy of what a reconcile reads: kopf bodies are live views that change
    under a worker thread. kopf's own annotations (a full copy of the spec) and the server's
    managedFields are left out: the cache holds one of these per stack."""
    meta = body.get("metadata") or {}
    slim = {k: v for k, v in meta.items() if k != "managedFields"}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if not k.startswith(KOPF_ANNOTATIONS)}
    if annotations:
        slim["annotations"] = annotations
    else:
        slim.pop("annotations", None)
    plain = {**{k: v for k, v in body.items() if k != "metadata"}, "metadata": slim}
    return copy.deepcopy(plain) if detach else plain


def _locate(obj: Mapping[str, Any]) -> tuple[StackKey, ChildKey] | None:
    """(stack, child) of an object labelled as a child of a stack; None for anything else."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    instance = labels.get(LABEL_INSTANCE)
    if labels.get(LABEL_MANAGED_BY) != MANAGED_BY or not instance or not meta.get("name"):
        return None
    return (meta.get("namespace") or "default", instance), (str(obj.get("kind")), meta["name"])
