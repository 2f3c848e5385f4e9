"""The controllers a cluster runs beside its API server, simulated for the emulator: the
kubelet with the Deployment and StatefulSet controllers (every pod ready at once, or none),
the Job controller (told each pod's exit code by the test), and owner-reference garbage
collection. A mixin of `emulator.Emulator`, whose store, lock and watch buses they write.
"""

from __future__ import annotations

import asyncio
import datetime
from collections import Counter
from typing import Any

WORKLOADS = {"deployments", "statefulsets"}


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).isoformat().replace("+00:00", "Z")


def _fail_job_rule(job: dict[str, Any], exit_code: int) -> tuple[int, str] | None:
    """(index, container) of the first FailJob rule of the Job's podFailurePolicy that an exit
    with `exit_code` matches; None when none does."""
    containers = [c["name"] for c in job["spec"]["template"]["spec"]["containers"]]
    for index, rule in enumerate(((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []):
        codes = rule.get("onExitCodes") or {}
        matched = exit_code in codes.get("values", [])
        if rule.get("action") == "FailJob" and (matched if codes.get("operator") == "In" else not matched):
            return index, codes.get("containerName") or containers[0]
    return None



class SimulatedControllers:
    """Needs, from the class it is mixed into: `objects`, `_lock`, `_buses`, `_versions`,
    `_get`, `kubelet_ready` and `rollouts`."""

    objects: Any
    _lock: asyncio.Lock
    _buses: Any
    _versions: Any
    kubelet_ready: bool
    rollouts: Counter[tuple[str, str, str]]

    def _get(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def _kubelet(self, resource: Any, namespace: str | None, name: str, old: dict[str, Any] | None) -> None:
        new = self._get(resource, namespace, name)
        if new is None:
            return
        if old is None or (old.get("spec") or {}).get("template") != (new.get("spec") or {}).get("template"):
            self.rollouts[(resource.plural, namespace or "", name)] += 1
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._report(resource, namespace,
                                                                                        name)))

    async def _report(self, resource: Any, namespace: str | None, name: str) -> None:
        """What the Deployment/StatefulSet controllers and kubelets would report."""
        async with self._lock:
            key = (resource, namespace, name)
            if key not in self.objects or self.objects[key].deleted:
                return
            obj = self.objects[key]
            spec = obj.raw.get("spec") or {}
            want = int(spec.get("replicas", 1))
            ready = want if self.kubelet_ready else 0
            status = {"observedGeneration": obj.raw["metadata"].get("generation", 1), "replicas": want,
                      "readyReplicas": ready, "availableReplicas": ready, "updatedReplicas": ready}
            if obj.raw.get("status") == status:
                return
            obj.patch({"status": status, "metadata": {"resourceVersion": str(next(self._versions))}})
            await self._buses[resource].put({"type": "MODIFIED", "object": obj.raw})

    def report_all(self) -> None:
        """Re-run the simulated kubelet for every workload (after flipping `kubelet_ready`)."""
        for (resource, namespace, name), obj in list(self.objects.items()):
            if resource.plural in WORKLOADS and not obj.deleted:
                asyncio.ensure_future(self._report(resource, namespace, name))

    async def finish_job(self, namespace: str, name: str, exit_code: int) -> None:
        """What the Job controller reports when the Job's pod exits with `exit_code`: Complete
        on 0; Failed by the first FailJob rule of its `podFailurePolicy` that matches the code;
        else (retried until `backoffLimit`, every try with the same code) Failed with
        BackoffLimitExceeded."""
        async with self._lock:
            key = next((k for k, o in self.objects.items() if k[0].plural == "jobs" and k[1] == namespace
                        and k[2] == name and not o.deleted), None)
            if key is None:
                raise KeyError(f"no Job {namespace}/{name}")
            obj = self.objects[key]
            if exit_code == 0:
                cond = {"type": "Complete", "status": "True", "reason": "Completed", "message": ""}
                counts = {"succeeded": 1}
            elif (rule := _fail_job_rule(obj.raw, exit_code)) is not None:
                index, container = rule
                cond = {"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
                        "message": f"Container {container} for pod {namespace}/{name}-x failed with exit "
                                   f"code {exit_code} matching FailJob rule at index {index}"}
                counts = {"failed": 1}
            else:
                cond = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit"}
                counts = {"failed": int((obj.raw.get("spec") or {}).get("backoffLimit", 6)) + 1}
            status = {"conditions": [{**cond, "lastTransitionTime": _now()}], **counts}
            obj.patch({"status": status, "metadata": {"resourceVersion": str(next(self._versions))}})
            await self._buses[key[0]].put({"type": "MODIFIED", "object": obj.raw})

    async def _collect_garbage(self, uid: str | None) -> None:
        """Delete every object owned by `uid`, then their dependents (background cascade)."""
        if not uid:
            return
        async with self._lock:
            doomed = [(key, obj) for key, obj in list(self.objects.items()) if not obj.deleted and any(
                ref.get("uid") == uid for ref in obj.raw.get("metadata", {}).get("ownerReferences") or [])]
            for (resource, _, _), obj in doomed:
                raw = obj.raw
                obj.delete()
                await self._buses[resource].put({"type": "DELETED", "object": raw})
        for _, obj in doomed:
            await self._collect_garbage(obj.last.raw.get("metadata", {}).get("uid"))
