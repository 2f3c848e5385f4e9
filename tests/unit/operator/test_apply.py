"""Diff and apply: minimal three-way merge patches, zero writes when nothing differs, pruning
only what the stack owns, and which API errors are retried."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from aistack.operator.apply import (
    LAST_APPLIED,
    SUMMARY,
    apply_children,
    is_subset,
    last_applied,
    merge_patch,
    summarize,
    with_last_applied,
)
from aistack.operator.kube import ApiError, Kind

UID = "owner-uid"


def cm(name: str, data: dict[str, str], *, owned: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "labels": {"app.kubernetes.io/instance": "s"}}
    if owned:
        meta["ownerReferences"] = [{"uid": UID}]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


class FakeKube:
    """Records calls; serves objects from a dict; can be told to fail."""

    def __init__(self, objects: dict[str, dict[str, Any]] | None = None) -> None:
        self.objects = objects or {}
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[tuple[str, str], ApiError] = {}

    def _check(self, verb: str, name: str) -> None:
        self.calls.append((verb, name))
        if (verb, name) in self.fail:
            raise self.fail[(verb, name)]

    def create(self, kind: Kind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check("create", body["metadata"]["name"])
        if body["metadata"]["name"] in self.objects:
            raise ApiError(409, "exists")
        self.objects[body["metadata"]["name"]] = copy.deepcopy(body)
        return body

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        self._check("get", name)
        return copy.deepcopy(self.objects.get(name))

    def patch(self, kind: Kind, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check("patch", name)
        self.objects[name] = _merge(self.objects[name], body)
        return self.objects[name]

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        self._check("delete", name)
        self.objects.pop(name, None)


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def test_is_subset_ignores_server_fields_but_not_list_lengths() -> None:
    assert is_subset({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "status": {}})
    assert is_subset([{"name": "x"}], [{"name": "x", "terminationMessagePath": "/dev"}])
    assert not is_subset([{"name": "x"}], [{"name": "x"}, {"name": "y"}])
    assert not is_subset({"a": 1}, {"a": "1"})
    assert not is_subset({"a": 1}, {})


def test_merge_patch_is_minimal_removes_dropped_fields_and_keeps_foreign_ones() -> None:
    last = {"spec": {"replicas": 2, "nodeSelector": {"gpu": "l4"}, "image": "a"}}
    desired = {"spec": {"replicas": 2, "image": "b"}}
    live = {"spec": {"replicas": 2, "nodeSelector": {"gpu": "l4"}, "image": "a",
                     "progressDeadlineSeconds": 600}}
    assert merge_patch(last, desired, live) == {"spec": {"image": "b", "nodeSelector": None}}
    assert merge_patch(desired, desired, {"spec": {"replicas": 2, "image": "b", "x": 1}}) == {}


def test_merge_patch_replaces_lists_whole() -> None:
    desired = {"args": ["--a", "--b"]}
    assert merge_patch({}, desired, {"args": ["--a"]}) == {"args": ["--a", "--b"]}


def test_last_applied_round_trip_is_deterministic() -> None:
    desired = cm("x", {"k": "v"})
    body = with_last_applied(desired)
    assert last_applied(body) == desired
    assert with_last_applied(copy.deepcopy(desired)) == body
    assert LAST_APPLIED not in desired["metadata"].get("annotations", {})
    assert last_applied({"metadata": {"annotations": {LAST_APPLIED: "not json"}}}) == {}


def test_no_write_when_live_matches() -> None:
    desired = [cm("a", {"k": "v"}), cm("b", {"k": "w"})]
    live = {("ConfigMap", m["metadata"]["name"]): {**with_last_applied(m), "metadata": {
        **with_last_applied(m)["metadata"], "uid": "x", "resourceVersion": "7"}} for m in desired}
    kube = FakeKube()
    result = apply_children(kube, namespace="ns", desired=desired, live=live, owner_uid=UID)
    assert kube.calls == [] and result.writes == 0


def test_creates_patches_and_prunes_only_owned() -> None:
    kube = FakeKube()
    old = with_last_applied(cm("a", {"k": "old"}))
    gone = with_last_applied(cm("gone", {}))
    kept = with_last_applied(cm("retained", {}, owned=False))
    live = {("ConfigMap", "a"): old, ("ConfigMap", "gone"): gone, ("ConfigMap", "retained"): kept}
    kube.objects = {"a": old, "gone": gone, "retained": kept}
    result = apply_children(kube, namespace="ns", desired=[cm("a", {"k": "new"}), cm("b", {})],
                            live=live, owner_uid=UID)
    assert result.created == [("ConfigMap", "b")]
    assert result.patched == [("ConfigMap", "a")]
    assert result.deleted == [("ConfigMap", "gone")]
    assert kube.objects["a"]["data"] == {"k": "new"}
    assert "retained" in kube.objects


def test_a_held_child_is_neither_written_nor_created_nor_pruned() -> None:
    kube = FakeKube()
    old = with_last_applied(cm("held", {"model": "old"}))
    kube.objects = {"held": old}
    live = {("ConfigMap", "held"): old}
    result = apply_children(kube, namespace="ns", desired=[cm("held", {"model": "new"}), cm("later", {})],
                            live=live, owner_uid=UID, hold={("ConfigMap", "held"), ("ConfigMap", "later")})
    assert kube.calls == [] and result.writes == 0
    assert kube.objects == {"held": old}
    assert result.live == {("ConfigMap", "held"): old}
    released = apply_children(kube, namespace="ns", desired=[cm("held", {"model": "new"}), cm("later", {})],
                              live=live, owner_uid=UID)
    assert released.patched == [("ConfigMap", "held")] and released.created == [("ConfigMap", "later")]


def test_create_conflict_from_a_stale_cache_patches_instead() -> None:
    existing = with_last_applied(cm("a", {"k": "old"}))
    kube = FakeKube({"a": existing})
    result = apply_children(kube, namespace="ns", desired=[cm("a", {"k": "new"})], live={}, owner_uid=UID)
    assert kube.calls == [("create", "a"), ("get", "a"), ("patch", "a")]
    assert result.patched == [("ConfigMap", "a")]


def test_rejected_child_is_reported_and_others_converge() -> None:
    kube = FakeKube()
    kube.fail[("create", "a")] = ApiError(422, "spec.selector: field is immutable")
    result = apply_children(kube, namespace="ns", desired=[cm("a", {}), cm("b", {})], live={}, owner_uid=UID)
    assert result.failed == {("ConfigMap", "a"): "422: spec.selector: field is immutable"}
    assert result.created == [("ConfigMap", "b")]


@pytest.mark.parametrize("status", [0, 409, 429, 500, 503])
def test_transient_errors_propagate_for_a_retry(status: int) -> None:
    kube = FakeKube()
    kube.fail[("create", "a")] = ApiError(status, "try later")
    if status == 409:
        kube.fail[("get", "a")] = ApiError(503, "down")
    with pytest.raises(ApiError):
        apply_children(kube, namespace="ns", desired=[cm("a", {})], live={}, owner_uid=UID)


def test_switching_on_autoscaling_leaves_replicas_to_the_hpa() -> None:
    def deployment(spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "gw", "namespace": "ns", "ownerReferences": [{"uid": UID}]},
                "spec": spec}

    fixed = with_last_applied(deployment({"replicas": 2, "paused": False}))
    kube = FakeKube({"gw": fixed})
    result = apply_children(kube, namespace="ns", desired=[deployment({"paused": False})],
                            live={("Deployment", "gw"): fixed}, owner_uid=UID)
    assert result.patched == [("Deployment", "gw")]  # the last-applied record changed
    assert kube.objects["gw"]["spec"]["replicas"] == 2


def test_summaries_skip_intact_children_and_read_drifted_ones_in_full() -> None:
    from aistack.operator.apply import SUMMARY, summarize

    desired = cm("a", {"k": "v"})
    stored = {**with_last_applied(desired),
              "metadata": {**with_last_applied(desired)["metadata"], "uid": "1"}}
    summary = summarize(stored)
    assert summary[SUMMARY]["intact"] and "data" not in summary
    kube = FakeKube({"a": stored})
    assert apply_children(kube, namespace="ns", desired=[desired], live={("ConfigMap", "a"): summary},
                          owner_uid=UID).writes == 0
    assert kube.calls == []
    edited = copy.deepcopy(stored)
    edited["data"]["k"] = "hand-edited"
    kube = FakeKube({"a": edited})
    result = apply_children(kube, namespace="ns", desired=[desired],
                            live={("ConfigMap", "a"): summarize(edited)},
                            owner_uid=UID)
    assert kube.calls == [("get", "a"), ("patch", "a")] and result.patched == [("ConfigMap", "a")]
    assert kube.objects["a"]["data"] == {"k": "v"}


def deployment(env: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "gw", "namespace": "ns", "ownerReferences": [{"uid": UID}]},
            "spec": {"template": {"spec": {
                "containers": [{"name": "gateway", "image": "gw:1", "env": env,
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/aistack"}]}],
                "volumes": [{"name": "config", "configMap": {"name": "gw-config"}}]}}}}


def others_added(obj: dict[str, Any]) -> dict[str, Any]:
    """What a webhook and a controller add: an env var, a sidecar, a volume, a pull secret."""
    out = copy.deepcopy(obj)
    pod = out["spec"]["template"]["spec"]
    pod["containers"][0]["env"].append({"name": "OTEL_ENDPOINT", "value": "http://otel:4317"})
    pod["containers"].append({"name": "istio-proxy", "image": "istio/proxy:1"})
    pod["volumes"].append({"name": "vault-secrets", "emptyDir": {}})
    pod["imagePullSecrets"] = [{"name": "regcred"}]
    out["metadata"]["resourceVersion"] = "7"
    return out


def test_list_items_other_writers_add_are_neither_drift_nor_removed() -> None:
    ours = deployment([{"name": "A", "value": "1"}])
    live = others_added(with_last_applied(ours))
    kube = FakeKube({"gw": copy.deepcopy(live)})
    result = apply_children(kube, namespace="ns", desired=[ours], live={("Deployment", "gw"): live},
                            owner_uid=UID)
    assert result.patched == [] and kube.calls == []  # no re-patch, no rollout
    assert summarize(live)[SUMMARY]["intact"]  # nor from a watch cache's summary


def test_a_patch_replaces_only_what_the_operator_applied_and_keeps_the_others_items() -> None:
    before = deployment([{"name": "A", "value": "1"}, {"name": "DROPPED", "value": "x"}])
    live = others_added(with_last_applied(before))
    kube = FakeKube({"gw": copy.deepcopy(live)})
    sent: list[dict[str, Any]] = []
    patch = kube.patch
    kube.patch = lambda kind, ns, name, body: sent.append(body) or patch(kind, ns, name, body)  # type: ignore[method-assign]
    after = deployment([{"name": "A", "value": "2"}])
    result = apply_children(kube, namespace="ns", desired=[after], live={("Deployment", "gw"): live},
                            owner_uid=UID)
    assert result.patched == [("Deployment", "gw")]
    pod = kube.objects["gw"]["spec"]["template"]["spec"]
    gateway, sidecar = pod["containers"]
    assert gateway["env"] == [{"name": "A", "value": "2"}, {"name": "OTEL_ENDPOINT", "value": "http://otel:4317"}]
    assert sidecar == {"name": "istio-proxy", "image": "istio/proxy:1"}
    assert [v["name"] for v in pod["volumes"]] == ["config", "vault-secrets"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert sent[0]["metadata"]["resourceVersion"] == "7"  # only onto the version the lists were read from
    again = apply_children(kube, namespace="ns", desired=[after],
                           live={("Deployment", "gw"): kube.objects["gw"]}, owner_uid=UID)
    assert again.patched == []  # converged: the next pass writes nothing


def test_an_item_the_operator_stops_rendering_is_removed_even_beside_others_items() -> None:
    with_sidecar = deployment([{"name": "A", "value": "1"}])
    with_sidecar["spec"]["template"]["spec"]["containers"].append({"name": "guardrails", "image": "gr:1"})
    live = others_added(with_last_applied(with_sidecar))
    kube = FakeKube({"gw": copy.deepcopy(live)})
    apply_children(kube, namespace="ns", desired=[deployment([{"name": "A", "value": "1"}])],
                   live={("Deployment", "gw"): live}, owner_uid=UID)
    containers = kube.objects["gw"]["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["gateway", "istio-proxy"]
