"""Where a pod's own small writes to the Kubernetes API go (the gateways' load and canary reports,
the adapter agents' state), found without a client library or a kubeconfig."""

from __future__ import annotations

import os
from pathlib import Path

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
