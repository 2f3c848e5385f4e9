"""A thin REST layer over the `kubernetes` client for the few kinds the operator manages.

Why not the typed `*V1Api` classes: the operator handles children generically (render gives
plain dicts; apply diffs dicts), and one `request()` makes every API call countable and
checkable against the RBAC rules in `deploy/operator/` (see `CALLS`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient, Configuration
from urllib3 import BaseHTTPResponse
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from aistack.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION

MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True, kw_only=True)
class Kind:
    api_version: str
    kind: str
    plural: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = f"{base}/namespaces/{namespace}/{self.plural}"
        if name:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path


AISTACK = Kind(api_version=f"{GROUP}/{VERSION}", kind=KIND, plural=PLURAL)
EVENT = Kind(api_version="v1", kind="Event", plural="events")
# Every kind render() can produce, keyed by `kind`.
CHILD_KINDS: dict[str, Kind] = {k.kind: k for k in (
    Kind(api_version="v1", kind="ConfigMap", plural="configmaps"),
    Kind(api_version="v1", kind="PersistentVolumeClaim", plural="persistentvolumeclaims"),
    Kind(api_version="v1", kind="Service", plural="services"),
    Kind(api_version="apps/v1", kind="StatefulSet", plural="statefulsets"),
    Kind(api_version="apps/v1", kind="Deployment", plural="deployments"),
    Kind(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler", plural="horizontalpodautoscalers"),
    Kind(api_version="batch/v1", kind="Job", plural="jobs"),
    # the model's autoscaling: the gateways' load Lease and their right to write it; KEDA's object
    Kind(api_version="coordination.k8s.io/v1", kind="Lease", plural="leases"),
    Kind(api_version="v1", kind="ServiceAccount", plural="serviceaccounts"),
    Kind(api_version="rbac.authorization.k8s.io/v1", kind="Role", plural="roles"),
    Kind(api_version="rbac.authorization.k8s.io/v1", kind="RoleBinding", plural="rolebindings"),
    Kind(api_version="keda.sh/v1alpha1", kind="ScaledObject", plural="scaledobjects"),
)}

# (kind, verb) pairs this module's callers use; the RBAC test checks the ClusterRole covers them.
CALLS: set[tuple[str, str]] = {
    *((k, v) for k in CHILD_KINDS for v in ("get", "list", "watch", "create", "patch", "delete")),
    (KIND, "list"), (KIND, "watch"), (KIND, "patch"), (f"{KIND}/status", "patch"),
    ("Event", "create"),
    ("Deployment/scale", "patch"),  # the built-in autoscaler sets a model's replicas
}


RETRY_AFTER_CAP = 10.0
"""The longest one Retry-After is waited (a thread of the operator waits it)."""


class ApiRetry(Retry):
    """urllib3's Retry as the API server's flow control wants it: a `Retry-After` is honoured, at
    most RETRY_AFTER_CAP seconds, with up to half again at random, so that the clients a 429
    turned away do not all come back in the same instant."""

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        try:
            seconds = super().get_retry_after(response)
        except InvalidHeader:  # not a number or a date: back off as if none was sent
            return None
        if seconds is None:
            return None
        return min(seconds, RETRY_AFTER_CAP) * random.uniform(1.0, 1.5)


def api_retries() -> Retry:
    """What the operator's API calls retry: a 429 (API Priority and Fairness turned the request
    away before doing anything, so any method is safe to resend) and a 503 that names a
    Retry-After, up to 5 times; a refused connection 3 times; never a read error (the server may
    have acted). Backoff 0.25 s doubling, jittered; after the last try the answer is returned
    (an ApiError), not raised."""
    return ApiRetry(total=8, connect=3, read=0, other=0, status=5, status_forcelist=(429,),
                    allowed_methods=None, backoff_factor=0.25, backoff_max=10.0, backoff_jitter=0.25,
                    respect_retry_after_header=True, raise_on_status=False)


def with_retries(configuration: Configuration) -> Configuration:
    """`configuration` with `api_retries()` (read by every ApiClient built from it afterwards)."""
    configuration.retries = api_retries()
    return configuration


class ApiError(Exception):
    """A failed API call; `status` is the HTTP status (0 when the server was unreachable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class Kube:
    """JSON in, JSON out; raises ApiError on any non-2xx answer."""

    def __init__(self, api_client: ApiClient) -> None:
        self.api = api_client

    def request(self, method: str, path: str, *, body: Any = None, query: dict[str, str] | None = None,
                content_type: str = "application/json") -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, body, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()) or None,
            header_params=headers, body=body, auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(method, url, header_params=headers, body=body)
        except Exception as err:  # connection refused, timeouts: let the caller retry
            raise ApiError(0, f"{type(err).__name__}: {err}") from err
        data = response.read()
        if not 200 <= response.status < 300:
            raise ApiError(response.status, _message(data) or str(response.reason))
        return json.loads(data) if data else None

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] | None = self.request("GET", kind.path(namespace, name))
            return found
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def list(self, kind: Kind, namespace: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        found: dict[str, Any] = self.request("GET", kind.path(namespace), query=query)
        items: list[dict[str, Any]] = found.get("items") or []
        return list(items)

    def create(self, kind: Kind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.request("POST", kind.path(namespace), body=body)
        return created

    def patch(self, kind: Kind, namespace: str, name: str, body: dict[str, Any], *,
              subresource: str | None = None) -> dict[str, Any]:
        patched: dict[str, Any] = self.request("PATCH", kind.path(namespace, name, subresource), body=body,
                                               content_type=MERGE_PATCH)
        return patched

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        try:
            self.request("DELETE", kind.path(namespace, name), body={"propagationPolicy": "Background"})
        except ApiError as err:
            if err.status != 404:
                raise


def _message(data: bytes | None) -> str:
    try:
        return str(json.loads(data or b"{}").get("message", ""))
    except (ValueError, AttributeError):
        return (data or b"")[:200].decode(errors="replace")
