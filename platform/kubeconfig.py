"""The kubeconfig of an EKS cluster, authenticating with `aws eks get-token`.

Built from the cluster's outputs instead of fetched, so it holds no long-lived credential:
whoever uses it needs AWS credentials that the cluster's access entries admit. It is still
exported as a secret because the endpoint and CA of a private cluster are not for everyone.
"""

from __future__ import annotations

import json
from typing import Any


def build_kubeconfig(*, cluster_name: str, endpoint: str, ca_data: str, region: str) -> dict[str, Any]:
    """A kubeconfig with one cluster, user and context, all named after the cluster."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name,
                      "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "users": [
            {
                "name": cluster_name,
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "aws",
                        "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region,
                                 "--output", "json"],
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
    }


def kubeconfig_json(**kwargs: str) -> str:
    """`build_kubeconfig` as the JSON string `kubernetes.Provider(kubeconfig=...)` accepts."""
    return json.dumps(build_kubeconfig(**kwargs), sort_keys=True)
