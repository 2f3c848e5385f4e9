"""Where a pod's own small writes to the Kubernetes API go (the gateways' load and canary reports,
the adapter agents' state), found without a client library or a kubeconfig."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path
from typing import Any

TOKEN_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""The projected service-account token, its CA and namespace."""
KUBE_API_ENV = "AISTACK_KUBE_API"
"""The API server's URL, where not in a pod (tests); in a pod the service's environment names it."""


def kube_api() -> str | None:
    """The Kubernetes API's base URL: `AISTACK_KUBE_API`, else the in-cluster service; None outside."""
    if url := os.environ.get(KUBE_API_ENV):
        return url.rstrip("/")
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        return None
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def pod_name(pod: str | None = None) -> str:
    """This pod's name (the kubelet sets HOSTNAME to it), or `pod` where given (tests)."""
    return pod or os.environ.get("HOSTNAME") or socket.gethostname()


class LeasePatch:
    """Where and how one pod merge-patches its annotation on a Lease: the URL, the headers with
    the service-account token re-read on each write (the kubelet rotates it), and TLS verified
    against the service account's CA (plain HTTP: a test's emulator)."""

    def __init__(self, *, api: str, namespace: str, lease: str, token_dir: Path = TOKEN_DIR) -> None:
        self.url = f"{api}/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{lease}"
        self.token_dir = token_dir
        self._ssl: ssl.SSLContext | None = None

    @staticmethod
    def body(key: str, value: str) -> dict[str, Any]:
        return {"metadata": {"annotations": {key: value}}}

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/merge-patch+json"}
        try:
            token = (self.token_dir / "token").read_text(encoding="utf-8").strip()
        except OSError:
            token = ""
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def tls(self) -> ssl.SSLContext | bool:
        """aiohttp's `ssl=` and httpx's `verify=`: False for plain HTTP."""
        if not self.url.startswith("https://"):
            return False
        if self._ssl is None:
            ca = self.token_dir / "ca.crt"
            self._ssl = ssl.create_default_context(cafile=str(ca) if ca.is_file() else None)
        return self._ssl
