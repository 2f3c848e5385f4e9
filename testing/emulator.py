"""A Kubernetes API emulator for the operator's tests and benchmark (kmock, filled in).

Test-only, and kept out of the product (it is `aistack.testing`, a distribution the images never
install): it imports kmock's private `kmock._internal` and replaces `kmock.parsing.parse_path`
for the whole process, which no code that runs in a cluster should do. kmock is pinned in the
`test` extra, so a kmock release that moves those internals fails here, not in a user's hands.

No cluster exists where aistack is tested, so the real kopf and the real `kubernetes` client
talk HTTP to kmock's in-memory emulator. kmock 0.8 leaves gaps that matter to an operator;
this subclass fills them, each the simple way:

- object metadata: `uid`, `resourceVersion` (bumped on every write), `generation` (bumped on
  spec changes only), `creationTimestamp`, a `name` from `generateName` (kopf's Events: two
  without a name would collide);
- `/status` separation: a main-resource patch cannot change status, a `/status` patch can
  change nothing else;
- `GET /api/v1/namespaces[/name]` (kmock's path parser fails on cluster-scoped core paths),
  with the `default` namespace seeded;
- owner-reference garbage collection (foreground, immediate) when an owner goes away;
- label selectors on list (equality terms only);
- list responses carry `kind`/`apiVersion` (kubectl decodes them by it);
- optimistic concurrency for merge patches: one that names a `metadata.resourceVersion`
  gets 409 Conflict when the object has moved on (leader election relies on it);
- the kinds peering and leader election use: kopf's `ClusterKopfPeering`/`KopfPeering`
  (status written with the object, as their CRDs have no status subresource) and `Lease`;
  `peering_crds=False` is a cluster without kopf's CRDs: discovery leaves `kopf.dev` out and
  its lists answer 404;
- the `scale` subresource of Deployments (a patch of `spec.replicas`, answered with a Scale);
- a simulated kubelet + controllers (`emulator_controllers.py`): Deployments/StatefulSets get
  `status` replicas equal to `spec.replicas` after each spec change (or 0 when
  `kubelet_ready` is False), and a rollout is counted whenever the pod template changes; Jobs
  finish only when a test calls `finish_job` with the exit code of their pod;
- the request history that kmock keeps (and scans on every request) is cut to a short live
  window, the Kubernetes verbs skip kmock's reaction search while no test added a reaction
  of its own, and objects are looked up by key instead of by a scan of all objects; `log`
  keeps every (method, path) for assertions and counting (method `WATCH` for watch requests).

Not emulated (untested here): strategic-merge list semantics (patches merge dicts and replace
lists), server-side apply, admission and schema validation/defaulting (the CRD's OpenAPI and
CEL rules are not enforced), watch bookmarks/resourceVersion resumption, PUT, field
selectors, RBAC enforcement, quotas, real pods and scheduling.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import threading
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import attrs
import kmock
from kmock._internal import dicts, parsing, references

from aistack.api.v1alpha1 import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION
from aistack.testing.emulator_controllers import WORKLOADS, SimulatedControllers, _now

_original_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock fails on `/api/v1/namespaces[/x]` (it takes `namespaces` as a scope there)."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"] and len(parts) in (3, 4) and parts[2] == "namespaces":
        return parsing.ParsedPath(group="", version="v1", plural="namespaces",
                                  name=parts[3] if len(parts) == 4 else None)
    return _original_parse_path(path)


parsing.parse_path = _parse_path

VERBS = {"get", "list", "watch", "create", "patch", "update", "delete"}
RESOURCES: dict[str, tuple[str, bool, set[str]]] = {
    # "group/version/plural": (kind, namespaced, subresources)
    f"{GROUP}/{VERSION}/{PLURAL}": (KIND, True, {"status"}),
    "v1/namespaces": ("Namespace", False, set()),
    "v1/configmaps": ("ConfigMap", True, set()),
    "v1/secrets": ("Secret", True, set()),
    "v1/services": ("Service", True, set()),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", True, set()),
    "v1/events": ("Event", True, set()),
    "apps/v1/deployments": ("Deployment", True, {"status", "scale"}),
    "apps/v1/statefulsets": ("StatefulSet", True, {"status"}),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True, {"status"}),
    "batch/v1/jobs": ("Job", True, {"status"}),
    "events.k8s.io/v1/events": ("Event", True, set()),
    # kopf peering (deploy/operator/peering.yaml): the status is written with the main resource.
    "kopf.dev/v1/clusterkopfpeerings": ("ClusterKopfPeering", False, set()),
    "kopf.dev/v1/kopfpeerings": ("KopfPeering", True, set()),
    "coordination.k8s.io/v1/leases": ("Lease", True, set()),
    # the model's autoscaling: the gateway's account and its Role on the load Lease; KEDA's object
    "v1/serviceaccounts": ("ServiceAccount", True, set()),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True, set()),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True, set()),
    "keda.sh/v1alpha1/scaledobjects": ("ScaledObject", True, {"status"}),
}
SERVED = {references.resource(*key.rsplit("/", 2)) if key.count("/") == 2
          else references.resource("", *key.split("/")) for key in RESOURCES}
STATUS_PLURALS = {key.rsplit("/", 1)[1] for key, (_, _, sub) in RESOURCES.items() if "status" in sub}
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}
HISTORY_WINDOW = 32
CHILD_PLURALS = {"configmaps", "services", "persistentvolumeclaims", "deployments", "statefulsets",
                 "horizontalpodautoscalers", "jobs", "leases", "serviceaccounts", "roles", "rolebindings",
                 "scaledobjects"}


@attrs.define(kw_only=True)
class _DirectDispatch(kmock.KubernetesScaffold):
    """Answers the Kubernetes verbs from their built-in reactions directly.

    kmock picks a reaction by testing every registered reaction's filters against the request
    history (to honour slices and unions of its DSL): ~5 ms per request here, which made the
    emulator, not the operator, the bottleneck of the benchmark. While no test has added a
    reaction of its own, the reaction of a Kubernetes verb is known: call it. Sits between
    kmock's emulator (which stores the objects first) and its DSL dispatch in the MRO."""

    if TYPE_CHECKING:  # Emulator's fields: two slotted attrs bases cannot both add slots
        _direct: dict[Any, Any]
        _builtin_payloads: int

    async def _handle(self, request: Any) -> Any:
        direct: dict[Any, Any] = self._direct
        if request.resource in SERVED and len(self._payloads) == self._builtin_payloads:
            reaction = direct.get(request.action)
            if reaction is not None:
                return await reaction.response(request)
        return await super()._handle(request)


@attrs.define(kw_only=True)
class Emulator(SimulatedControllers, kmock.KubernetesEmulator, _DirectDispatch):
    """kmock's emulator with the gaps above filled."""

    kubelet_ready: bool = True
    peering_crds: bool = True
    """Serve kopf's peering kinds (`kopf.dev`), as after `kubectl apply -f deploy/operator/peering.yaml`."""
    fail_writes_after: int | None = None
    """Answer 503 to writes of child objects once this many more have succeeded (an API server
    outage in the middle of a reconcile); None: never."""
    log: list[tuple[str, str]] = attrs.field(factory=list)
    rollouts: Counter[tuple[str, str, str]] = attrs.field(factory=Counter)
    _versions: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1))
    _direct: dict[Any, Any] = attrs.field(factory=dict, init=False)
    _builtin_payloads: int = attrs.field(default=-1, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for key, (kind, namespaced, subresources) in RESOURCES.items():
            if key.startswith("kopf.dev/") and not self.peering_crds:
                continue
            self.resources[key] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, subresources=subresources, verbs=VERBS,
                singular=SINGULAR if kind == KIND else kind.lower(),
                shortnames=set(SHORT_NAMES) if kind == KIND else set())
        for name in ("default", "kube-system"):
            self.add_namespace(name)
        # kmock's emulator registers its six verb reactions last, in this order.
        verbs = (kmock.action.LIST, kmock.action.WATCH, kmock.action.FETCH, kmock.action.CREATE,
                 kmock.action.UPDATE, kmock.action.DELETE)
        self._direct = dict(zip(verbs, self._payloads[-len(verbs):], strict=True))
        self._builtin_payloads = len(self._payloads)

    def add_namespace(self, name: str) -> None:
        self.objects[references.resource("", "v1", "namespaces"), None, name] = {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": str(uuid.uuid4()),
                         "resourceVersion": str(next(self._versions))},
        }

    # -- what tests read -------------------------------------------------------------------
    def writes(self, since: int = 0) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.log[since:] if m in WRITE_METHODS]

    def snapshot(self) -> list[tuple[Any, Any]]:
        """(key, stored object) pairs, safe to call from another thread: kmock's `items()` is a
        generator the server thread changes under; a dict copy is one C call (retried in the
        rare case a garbage collection run lets the server thread in meanwhile)."""
        for _ in range(100):
            try:
                return list(self.objects._objects.copy().items())
            except RuntimeError:
                continue
        raise RuntimeError("the emulator's store kept changing during a snapshot")

    def find(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        for (resource, ns, n), obj in self.snapshot():
            if resource.plural == plural and ns == namespace and n == name and not obj.deleted:
                return copy.deepcopy(obj.raw)
        return None

    def all(self, plural: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(obj.raw) for (resource, _, _), obj in self.snapshot()
                if resource.plural == plural and not obj.deleted]

    # -- request handling ------------------------------------------------------------------
    async def _handle(self, request: Any) -> Any:
        method = str(getattr(request.method, "value", request.method)).upper()
        watch = method == "GET" and request.params.get("watch") in ("true", "1")
        self.log.append(("WATCH" if watch else method, request.url.path))
        del self._requests[:-HISTORY_WINDOW]
        resource = request.resource
        if method in WRITE_METHODS and resource is not None and resource.plural in CHILD_PLURALS \
                and self.fail_writes_after is not None:
            if self.fail_writes_after <= 0:
                raise kmock.KubernetesError(status=503, reason="ServiceUnavailable",
                                            message="emulated outage")
            self.fail_writes_after -= 1
        if resource is not None and request.action == kmock.action.CREATE and isinstance(request.data, dict):
            self._stamp_new(request)
        old = None
        if resource is not None and request.name and request.action in (kmock.action.UPDATE,
                                                                        kmock.action.DELETE):
            old = self._get(resource, request.namespace, request.name)
            if request.action == kmock.action.UPDATE and old is not None:
                self._check_version(request, old)
                self._stamp_update(request, old)
        if resource is not None and request.action == kmock.action.LIST and request.params.get(
                "labelSelector"):
            return await self._serve_selected_list(request)
        response = await super()._handle(request)
        if resource is not None and request.action in (kmock.action.CREATE, kmock.action.UPDATE):
            name = request.name or request.data.get("metadata", {}).get("name")
            namespace = request.namespace or request.data.get("metadata", {}).get("namespace")
            if resource.plural in WORKLOADS and request.subresource in (None, "scale"):
                self._kubelet(resource, namespace, name, old)
            if request.subresource == "scale":
                import aiohttp.web

                return aiohttp.web.json_response(self._scale(self._get(resource, namespace, name) or {}))
        if resource is not None and old is not None and self._get(resource, request.namespace,
                                                                  request.name) is None:
            await self._collect_garbage(old.get("metadata", {}).get("uid"))
        return response

    async def _serve_list(self, request: Any) -> Any:
        """As kmock's, but with a real resourceVersion, so a following watch can resume from it."""
        payload = await super()._serve_list(request)
        assert isinstance(payload, dict), payload  # kmock's list is always a mapping
        payload["metadata"] = {"resourceVersion": str(next(self._versions))}
        return {**self._list_type(request), **payload}

    def _list_type(self, request: Any) -> dict[str, str]:
        """`kind`/`apiVersion` of a list (kubectl needs them to decode it)."""
        resource = request.resource
        info = self.resources.get(resource)
        kind = "Object" if info is None else info["kind"] if isinstance(info, dict) else info.kind
        api_version = resource.version if not resource.group else f"{resource.group}/{resource.version}"
        return {"kind": f"{kind}List", "apiVersion": api_version}

    # kmock finds the object of a fetch/patch/delete by scanning every stored object; with
    # thousands of objects that dominates a benchmark. The key is known: look it up.
    def _stored(self, request: Any, *, allow_deleted: bool = False) -> Any:
        namespace = request.namespace
        name = request.name
        if request.action == kmock.action.CREATE:
            meta = request.data.get("metadata", {}) if isinstance(request.data, dict) else {}
            namespace, name = namespace or meta.get("namespace"), name or meta.get("name")
        key = (request.resource, namespace, name)
        if key not in self.objects or (self.objects[key].deleted and not allow_deleted):
            raise kmock.KubernetesObjectNotFoundError()
        return self.objects[key]

    async def _serve_fetch(self, request: Any) -> Any:
        return self._stored(request).raw

    async def _serve_create(self, request: Any) -> Any:
        return self._stored(request).raw

    async def _serve_update(self, request: Any) -> Any:
        return self._stored(request, allow_deleted=True).last.raw

    async def _serve_delete(self, request: Any) -> Any:
        return self._stored(request, allow_deleted=True).last.raw

    async def _serve_watch(self, request: Any) -> Any:
        """kmock replays every existing object as ADDED on each watch; a real server sends only
        what changed after the `resourceVersion` the client listed at (else kopf re-handles a
        stale body and its finalizer patch fails its version test)."""
        since = request.params.get("resourceVersion", "")
        if not since.isdigit():
            async for item in super()._serve_watch(request):
                yield item
            return
        yield b""
        bus = self._buses[request.resource]
        mark = await bus.mark()
        try:
            async with self._lock:
                replay = [obj.raw for (resource, namespace, name), obj in self.objects.items()
                          if resource == request.resource and not obj.deleted
                          and self._watched(request, namespace, name)
                          and int(obj.raw.get("metadata", {}).get("resourceVersion") or 0) > int(since)]
            for raw in replay:
                yield {"type": "MODIFIED", "object": raw}
            async for event in bus.stream(since=mark):
                meta = event.get("object", {}).get("metadata", {})
                if self._watched(request, meta.get("namespace"), meta.get("name")):
                    yield event
        finally:
            await bus.unmark(mark)

    @staticmethod
    def _watched(request: Any, namespace: str | None, name: str | None) -> bool:
        return (request.namespace is None or namespace == request.namespace) and (
            request.name is None or name == request.name)

    def _get(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (resource, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return self.objects[key].raw

    def _stamp_new(self, request: Any) -> None:
        meta = request.data.setdefault("metadata", {})
        if request.namespace:
            meta["namespace"] = request.namespace
        if not meta.get("name") and meta.get("generateName"):  # as the API server names it
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        meta.update(uid=str(uuid.uuid4()), resourceVersion=str(next(self._versions)), generation=1,
                    creationTimestamp=_now())
        request.data.pop("status", None) if self._has_status(request.resource) else None

    @staticmethod
    def _check_version(request: Any, old: dict[str, Any]) -> None:
        """A merge patch that names a resourceVersion is a precondition: 409 when stale."""
        data = request.data
        expected = (data.get("metadata") or {}).get("resourceVersion") if isinstance(data, dict) else None
        if expected is not None and expected != old.get("metadata", {}).get("resourceVersion"):
            raise kmock.KubernetesError(status=409, reason="Conflict",
                                        message="the object has been modified; please apply your changes "
                                                "to the latest version and try again")

    def _stamp_update(self, request: Any, old: dict[str, Any]) -> None:
        data = request.data
        if isinstance(data, list):  # JSON patch (kopf's finalizers): its `test` ops see the old version
            data.append({"op": "add", "path": "/metadata/resourceVersion",
                         "value": str(next(self._versions))})
            return
        if request.subresource == "status":
            data = {"status": data.get("status")} if "status" in data else {}
        elif request.subresource == "scale":  # a Scale carries only the replica count
            replicas = (data.get("spec") or {}).get("replicas")
            data = {"spec": {"replicas": replicas}} if isinstance(replicas, int) else {}
        elif self._has_status(request.resource):
            data = {k: v for k, v in data.items() if k != "status"}
        merged = dicts.patch_dict(old, data)
        meta = dict(data.get("metadata") or {})
        meta["resourceVersion"] = str(next(self._versions))
        if merged.get("spec") != old.get("spec"):
            meta["generation"] = int(old.get("metadata", {}).get("generation") or 1) + 1
        data["metadata"] = meta
        # kmock patches with the parsed request body: hand it the filtered one.
        object.__setattr__(request, "data", data)

    @staticmethod
    def _scale(obj: dict[str, Any]) -> dict[str, Any]:
        """The `autoscaling/v1` Scale a scale subresource answers with (the patch itself, a merge
        of `spec.replicas`, went into the object like any patch)."""
        meta = obj.get("metadata") or {}
        return {"apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion")
                             if k in meta},
                "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0)}}

    def _has_status(self, resource: Any) -> bool:
        return resource.plural in STATUS_PLURALS

    async def _serve_selected_list(self, request: Any) -> Any:
        terms = dict(t.split("=", 1) for t in request.params["labelSelector"].split(",") if "=" in t)
        items = []
        for (resource, namespace, _), obj in list(self.objects.items()):
            if resource != request.resource or obj.deleted:
                continue
            if request.namespace and namespace != request.namespace:
                continue
            labels = obj.raw.get("metadata", {}).get("labels") or {}
            if all(labels.get(k) == v for k, v in terms.items()):
                items.append(obj.raw)
        import aiohttp.web

        return aiohttp.web.json_response({**self._list_type(request),
                                          "metadata": {"resourceVersion": str(next(self._versions))},
                                          "items": items})


class EmulatorThread:
    """Serves an Emulator on 127.0.0.1 from a background thread with its own event loop, so
    tests (and kopf in its own thread) stay synchronous and independent of pytest's loop."""

    def __init__(self, *, peering_crds: bool = True) -> None:
        self.emulator = Emulator(peering_crds=peering_crds)
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="kube-emulator", daemon=True)

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the emulator did not start within 10 s")
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` (sync or async) on the emulator's loop and return its result."""
        assert self._loop is not None

        async def wrapper() -> Any:
            result = fn(*args)
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(10)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator, host="127.0.0.1") as server:
            self.url = str(server.url).rstrip("/")
            self._started.set()
            await self._stop.wait()
