"""Pieces every layer's render function shares: names, labels, owner references, security.

Kept pure (no clock, no I/O, no environment) so that the same stack always renders to the
same bytes: golden tests stay stable and `aistack render` shows exactly what will be applied.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from aistack.api import yamlio
from aistack.api.conventions import (
    IMAGE_UID,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    MANAGED_BY,
    PART_OF,
    RUNTIME_IMAGE_NAME,
    child_name,
)
from aistack.api.images import image_reference
from aistack.api.resources import ResourceDefaults, with_defaults
from aistack.api.types import Resources, SecretKeyRef
from aistack.api.v1alpha1 import API_VERSION, KIND, AIStack

Manifest = dict[str, Any]

# Unprivileged user of the images we run; also the fsGroup so volumes are writable by it.
NON_ROOT_UID = IMAGE_UID  # the UID our images are built with (images/*/Dockerfile)


@dataclass(frozen=True, kw_only=True)
class RenderContext:
    """What a render needs besides the stack: the operator's version picks default images, and the
    canary's weight in force (which the spec does not hold) goes into the gateway's config."""

    stack: AIStack
    version: str
    canary_weight: int | None = None
    """The canary's weight in force (the operator's, `status.model.canary.weight`); the spec's when
    None (`aistack render`, a first reconcile)."""

    @property
    def runtime_image(self) -> str:
        return self.stack.spec.gateway.image or image_reference(name=RUNTIME_IMAGE_NAME, version=self.version)

    def name(self, component: str) -> str:
        return child_name(self.stack.name, component)


def labels(stack: AIStack, component: str) -> dict[str, str]:
    """The common label set; `selector_labels` is the stable subset used by selectors."""
    return {**selector_labels(stack, component), LABEL_PART_OF: PART_OF, LABEL_MANAGED_BY: MANAGED_BY}


def selector_labels(stack: AIStack, component: str) -> dict[str, str]:
    return {LABEL_NAME: PART_OF, LABEL_INSTANCE: stack.name, LABEL_COMPONENT: component}


def owner_references(stack: AIStack) -> list[dict[str, Any]]:
    """The AIStack as controlling owner (garbage collection); empty when its uid is unknown,
    as in `aistack render` of a file that was never applied."""
    if not stack.metadata.uid:
        return []
    return [{
        "apiVersion": API_VERSION, "kind": KIND, "name": stack.name, "uid": stack.metadata.uid,
        "controller": True, "blockOwnerDeletion": True,
    }]


def metadata(ctx: RenderContext, *, name: str, component: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ctx.stack.namespace,
                            "labels": labels(ctx.stack, component)}
    owners = owner_references(ctx.stack)
    if owners:
        meta["ownerReferences"] = owners
    return meta


def config_file(data: Any) -> str:
    """A config file's text, stable for equal data (sorted keys)."""
    return yamlio.dump(data, sort_keys=True)


def content_hash(*parts: Any) -> str:
    """Stable hash of JSON-able parts: the pod-template annotation that rolls pods on change."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def resources(spec: Resources, defaults: ResourceDefaults, *,
              extra_limits: dict[str, Any] | None = None) -> dict[str, Any]:
    """A container's `resources`: the spec's over the component's defaults (`aistack.api.resources`)."""
    spec = with_defaults(spec, defaults)
    out: dict[str, Any] = {}
    if spec.requests:
        out["requests"] = dict(sorted(spec.requests.items()))
    limits = {**spec.limits, **(extra_limits or {})}
    if limits:
        out["limits"] = dict(sorted(limits.items()))
    return out


def service_account(name: str | None) -> dict[str, Any]:
    """The pod spec's `serviceAccountName`, when the spec names one (else the namespace's
    `default`, by leaving it out)."""
    return {"serviceAccountName": name} if name else {}


def pod_security(*, fs_group: bool = True) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "runAsNonRoot": True, "runAsUser": NON_ROOT_UID, "runAsGroup": NON_ROOT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fs_group:
        ctx["fsGroup"] = NON_ROOT_UID
    return ctx


def container_security(*, read_only_root: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
    }


def secret_env(env_name: str, ref: SecretKeyRef) -> dict[str, Any]:
    """An env var filled from a Secret key: the only way a secret reaches a pod."""
    return {"name": env_name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def http_probe(path: str, port: str, *, period: int, failures: int, timeout: int = 3) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port}, "periodSeconds": period,
        "timeoutSeconds": timeout, "failureThreshold": failures,
    }


def service(ctx: RenderContext, *, name: str, component: str, ports: list[tuple[str, int]]) -> Manifest:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata(ctx, name=name, component=component),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(ctx.stack, component),
            "ports": [{"name": n, "port": p, "targetPort": n, "protocol": "TCP"} for n, p in ports],
        },
    }


def pvc(ctx: RenderContext, *, name: str, component: str, size: str, storage_class: str | None) -> Manifest:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": metadata(ctx, name=name, component=component), "spec": spec,
    }


API_TOKEN_VOLUME = "kube-api-access"
API_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
API_TOKEN_SECONDS = 3600


def api_token_volume() -> dict[str, Any]:
    """The service account's token (rotated by the kubelet), the cluster's CA and the namespace, as
    the API server's own automount projects them; mounted into the one container that calls the
    API (the gateway's, patching the load Lease; the adapter agent's, patching the adapters Lease),
    never into its neighbours (the guardrails sidecar, vLLM)."""
    return {"name": API_TOKEN_VOLUME, "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": API_TOKEN_SECONDS}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}}
