"""Diff and apply: make the live children equal to the rendered ones, writing only what differs.

A child is written only when a rendered field differs from the live object (a no-op
reconcile makes zero write requests). Patches are JSON merge patches computed three ways,
like client-side `kubectl apply`: the last applied manifest is kept in an annotation, so a
field that the spec stopped rendering is removed, while fields other actors own (defaults,
an HPA's replica count, `kubectl rollout restart` annotations) are left alone.

Lists of named things (`LIST_KEYS`: containers, env, volumes, volume mounts, image pull
secrets) are merged by their key, as strategic merge does: an item another writer added (a
webhook's sidecar, env var or volume, a controller's pull secret) is neither drift nor removed;
only items this operator applied before and renders no more are. A merge patch can only carry
a list whole, so such a patch lists the others' items too and names the resourceVersion it was
computed from (a 409 if the object changed meanwhile, and the reconcile is retried).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aistack.api.conventions import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY
from aistack.api.adapters import ANNOTATION_PREFIX as ADAPTERS_PREFIX
from aistack.api.canary_report import ANNOTATION_PREFIX as CANARY_PREFIX
from aistack.api.model_load import ANNOTATION_PREFIX
from aistack.operator.kube import CHILD_KINDS, ApiError, Kube

LAST_APPLIED = "aistack.dev/last-applied"
ChildKey = tuple[str, str]  # (kind, name)
_MISSING = object()


@dataclass
class ApplyResult:
    """What apply did; `live` holds every desired child as the server last returned it."""

    live: dict[ChildKey, dict[str, Any]] = field(default_factory=dict)
    created: list[ChildKey] = field(default_factory=list)
    patched: list[ChildKey] = field(default_factory=list)
    deleted: list[ChildKey] = field(default_factory=list)
    failed: dict[ChildKey, str] = field(default_factory=dict)

    @property
    def writes(self) -> int:
        return len(self.created) + len(self.patched) + len(self.deleted)


SUMMARY = "aistack.summary"
"""Key of the digest in a child summary (see `summarize`)."""


def record_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def summarize(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a watch cache needs to keep of a child: identity, ownership, readiness, and a
    digest saying whether it still holds what was last applied. A few hundred bytes instead
    of the whole object (which carries its last-applied copy), so thousands of stacks fit in
    the operator's memory; a child that needs a patch is read in full then."""
    meta = obj.get("metadata") or {}
    record = (meta.get("annotations") or {}).get(LAST_APPLIED)
    spec = obj.get("spec") or {}
    reports = {k: v for k, v in (meta.get("annotations") or {}).items()
               if k.startswith((ANNOTATION_PREFIX, CANARY_PREFIX, ADAPTERS_PREFIX))} \
        if obj.get("kind") == "Lease" else {}
    return {
        "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "generation",
                                          "labels", "ownerReferences") if k in meta}
        | ({"annotations": reports} if reports else {}),  # reports: load, canary windows, adapters
        "spec": {"replicas": spec["replicas"]} if "replicas" in spec else {},
        "status": {k: v for k, v in (obj.get("status") or {}).items() if k in (
            "replicas", "readyReplicas", "availableReplicas", "updatedReplicas", "observedGeneration")}
        | _job_outcome(obj),
        SUMMARY: {"applied": record_hash(record) if record else None,
                  "intact": bool(record) and is_subset(last_applied(obj), obj)},
    }


def _job_outcome(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A Job's terminal conditions (Complete/Failed), which `status.evaluation` is read from."""
    if obj.get("kind") != "Job":
        return {}
    done = [{k: str(c.get(k, ""))[:300] for k in ("type", "status", "reason", "message")}
            for c in (obj.get("status") or {}).get("conditions") or []
            if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"]
    return {"conditions": done} if done else {}


def in_sync(live: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether `live` (a full object or a summary) holds exactly what `desired` would apply."""
    if live is None:
        return False
    record = applied_record(desired)
    digest = live.get(SUMMARY)
    if digest is not None:
        return bool(digest["intact"]) and digest["applied"] == record_hash(record)
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    return annotations.get(LAST_APPLIED) == record and is_subset(desired, live)


def key_of(manifest: Mapping[str, Any]) -> ChildKey:
    return manifest["kind"], manifest["metadata"]["name"]


LIST_KEYS: dict[str, str] = {
    "containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
    "volumeMounts": "mountPath", "imagePullSecrets": "name",
}
"""List fields merged by key (the items' key field), as the API server's strategic merge does."""


def _keyed(field: str | None, *lists: Any) -> str | None:
    """The merge key of `field` when every item of every list carries it, else None (replace)."""
    key = LIST_KEYS.get(field or "")
    if key is None:
        return None
    for items in lists:
        if not isinstance(items, list) or not all(isinstance(i, Mapping) and key in i for i in items):
            return None
    return key


def is_subset(want: Any, have: Any, field: str | None = None, *, same_items: bool = False) -> bool:
    """Whether every field of `want` has the same value in `have` (which may hold more:
    server defaults, status, fields of other managers, and items of other writers in a list
    merged by key; with `same_items`, a keyed list of `have` holds no item `want` lacks). A
    digest (see `applied_record`) matches the string it was made from."""
    if isinstance(want, dict) and len(want) == 1 and DIGEST in want:
        return isinstance(have, str) and _digest(have) == want[DIGEST]
    if isinstance(want, dict):
        return isinstance(have, Mapping) and all(k in have and is_subset(v, have[k], k, same_items=same_items)
                                                 for k, v in want.items())
    if isinstance(want, list):
        key = _keyed(field, want, have)
        if key is not None:
            by_key = {item[key]: item for item in have}
            if same_items and len(by_key) != len({item[key] for item in want}):
                return False
            return all(item[key] in by_key and is_subset(item, by_key[item[key]], same_items=same_items)
                       for item in want)
        return isinstance(have, list) and len(want) == len(have) and all(map(is_subset, want, have))
    return bool(want == have)


def keep_others(desired: Any, live: Any, last: Any, field: str | None = None) -> Any:
    """`desired` with the items other writers added to its keyed lists (live items whose key
    this operator neither renders nor applied before), recursively; the rest is `desired`."""
    if isinstance(desired, dict) and isinstance(live, Mapping):
        prior = last if isinstance(last, Mapping) else {}
        return {k: keep_others(v, live.get(k), prior.get(k), k) for k, v in desired.items()}
    if isinstance(desired, list) and isinstance(live, list):
        key = _keyed(field, desired, live)
        if key is None:
            return desired
        live_by_key = {item[key]: item for item in live}
        last_by_key = {item.get(key): item for item in (last if isinstance(last, list) else [])
                       if isinstance(item, Mapping)}
        mine = {item[key] for item in desired}
        merged = [keep_others(item, live_by_key.get(item[key]), last_by_key.get(item[key]))
                  for item in desired]
        return merged + [item for item in live if item[key] not in mine and item[key] not in last_by_key]
    return desired


DIGEST = "aistack.dev/sha256"
"""In the last-applied record, a long string is kept as `{DIGEST: <its sha256>}`."""
DIGEST_OVER = 256
"""Strings longer than this (characters) are recorded by digest."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _recorded(value: Any) -> Any:
    """`value` with every string longer than DIGEST_OVER replaced by its digest."""
    if isinstance(value, str):
        return {DIGEST: _digest(value)} if len(value) > DIGEST_OVER else value
    if isinstance(value, Mapping):
        return {k: _recorded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_recorded(v) for v in value]
    return value


def applied_record(desired: Mapping[str, Any]) -> str:
    """The text recorded in the last-applied annotation (compact, sorted: equal specs, equal text).

    Long strings (a ConfigMap's config file, a system prompt in an env var) are recorded by
    their digest: a three-way merge needs the last applied keys and, for drift, whether a value
    is still the one applied, never the value itself. A full copy doubled every large child and
    put its annotations over the API server's 256 KiB limit (a long system prompt and policy)."""
    return json.dumps(_recorded(desired), sort_keys=True, separators=(",", ":"))


def with_last_applied(desired: Mapping[str, Any], record: str | None = None) -> dict[str, Any]:
    """A copy of `desired` plus the annotation recording it (`record`, when already computed)."""
    out = copy.deepcopy(dict(desired))
    annotations = out["metadata"].setdefault("annotations", {})
    annotations[LAST_APPLIED] = record if record is not None else applied_record(desired)
    return out


def merge_patch(last: Mapping[str, Any], desired: Mapping[str, Any],
                live: Mapping[str, Any]) -> dict[str, Any]:
    """The smallest JSON merge patch turning `live` into one that contains `desired`, with
    fields that were in `last` but are no longer desired set to null (removed). A list is
    replaced whole, as merge patch does; a keyed list (`LIST_KEYS`) keeps the items of other
    writers (`keep_others`)."""
    patch: dict[str, Any] = {}
    for k, want in desired.items():
        have = live.get(k, _MISSING)
        if isinstance(want, dict) and isinstance(have, dict):
            prior = last.get(k)
            sub = merge_patch(prior if isinstance(prior, dict) else {}, want, have)
            if sub:
                patch[k] = sub
        elif have is _MISSING:
            patch[k] = want
        else:
            merged = keep_others(want, have, last.get(k), k)  # the others' list items kept, ours dropped
            if not is_subset(merged, have, k, same_items=True):
                patch[k] = merged
    for k in last:
        if k not in desired and k in live:
            patch[k] = None
    return patch


def _keep_autoscaled_replicas(patch: dict[str, Any]) -> None:
    """When autoscaling is switched on, `replicas` leaves the rendered Deployment; removing it
    would reset the live count to 1 until the HPA scales back up. Leave it to the HPA."""
    spec = patch.get("spec")
    if isinstance(spec, dict) and "replicas" in spec and spec["replicas"] is None:
        del spec["replicas"]
        if not spec:
            del patch["spec"]


def _carries_lists(patch: Any) -> bool:
    if isinstance(patch, dict):
        return any(_carries_lists(v) for v in patch.values())
    return isinstance(patch, list)


def last_applied(live: Mapping[str, Any]) -> dict[str, Any]:
    text = (live.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED)
    try:
        return dict(json.loads(text)) if text else {}
    except ValueError:
        return {}


def instance_selector(name: str) -> str:
    return f"{LABEL_INSTANCE}={name},{LABEL_MANAGED_BY}={MANAGED_BY}"


def is_child(obj: Mapping[str, Any], *, name: str, namespace: str) -> bool:
    """Labelled as a child of this stack (the server may not filter by label: check again)."""
    meta = obj.get("metadata", {})
    labels = meta.get("labels") or {}
    return (meta.get("namespace") == namespace and labels.get(LABEL_INSTANCE) == name
            and labels.get(LABEL_MANAGED_BY) == MANAGED_BY)


def is_owned(obj: Mapping[str, Any], uid: str | None) -> bool:
    """Owned by the stack: only such children are ever pruned. Volumes that hold data are
    rendered without an owner, so neither pruning nor garbage collection removes them."""
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return uid is not None and any(ref.get("uid") == uid for ref in refs)


def fetch_children(kube: Kube, *, name: str, namespace: str) -> dict[ChildKey, dict[str, Any]]:
    """The live children, by listing each kind (used when no watch cache is at hand)."""
    live: dict[ChildKey, dict[str, Any]] = {}
    for kind in CHILD_KINDS.values():
        for obj in kube.list(kind, namespace, label_selector=instance_selector(name)):
            if is_child(obj, name=name, namespace=namespace):
                live[(kind.kind, obj["metadata"]["name"])] = obj
    return live


def apply_children(kube: Kube, *, namespace: str, desired: Iterable[Mapping[str, Any]],
                   live: Mapping[ChildKey, Mapping[str, Any]], owner_uid: str | None,
                   hold: Collection[ChildKey] = ()) -> ApplyResult:
    """Create missing children, patch drifted ones, delete the ones no longer rendered.

    `live` holds full objects or `summarize`d ones (from a watch cache). A child in `hold` is
    left as it is live, neither written nor deleted (not created when missing): the model's
    Deployment while the weights it will load are still being pulled.

    A child the server refuses (e.g. an immutable field changed, 422) is recorded in `failed`
    and the rest still converge; connection and server errors (0, 409 races aside, 5xx)
    propagate so that the caller retries the whole reconcile.
    """
    result = ApplyResult()
    wanted: set[ChildKey] = set()
    for manifest in desired:
        key = key_of(manifest)
        wanted.add(key)
        if key in hold:
            if key in live:
                result.live[key] = dict(live[key])
            continue
        kind = CHILD_KINDS[key[0]]
        record = applied_record(manifest)
        current = live.get(key)
        try:
            if current is not None and SUMMARY in current:
                digest = current[SUMMARY]
                if digest["intact"] and digest["applied"] == record_hash(record):
                    result.live[key] = dict(current)  # holds what is desired: nothing to write
                    continue
                current = kube.get(kind, namespace, key[1])  # drifted or outdated: diff the full object
            body = with_last_applied(manifest, record)  # a copy: `desired` may be shared (see RenderMemo)
            if current is None:
                try:
                    result.live[key] = kube.create(kind, namespace, body)
                    result.created.append(key)
                    continue
                except ApiError as err:
                    if err.status != 409:  # 409: created meanwhile (a stale cache); patch it instead
                        raise
                    current = kube.get(kind, namespace, key[1])
                    if current is None:
                        raise
            patch = merge_patch(last_applied(current), body, current)
            _keep_autoscaled_replicas(patch)
            if patch and _carries_lists(patch) and current.get("metadata", {}).get("resourceVersion"):
                # a list in a merge patch is written whole, the others' items with it: only onto
                # the version they were read from
                patch.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
            if patch:
                result.live[key] = kube.patch(kind, namespace, key[1], patch)
                result.patched.append(key)
            else:
                result.live[key] = dict(current)
        except ApiError as err:
            if err.status in (0, 409, 429) or err.status >= 500:
                raise
            result.failed[key] = str(err)
    for key in sorted(set(live) - wanted):
        if is_owned(live[key], owner_uid):
            kube.delete(CHILD_KINDS[key[0]], namespace, key[1])
            result.deleted.append(key)
    return result
