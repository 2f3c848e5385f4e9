"""Start the operator: cluster credentials, namespace scoping, liveness, peering.

`python -m aistack.operator` and `aistack operator` both end here. Credentials are loaded
explicitly (in-cluster service account, else KUBECONFIG) into one Configuration shared by
kopf and the operator's own client, never from import-time globals.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import kopf
from kubernetes import config as kube_config
from kubernetes.client import Configuration

from aistack.operator.handlers import OperatorOptions, build_registry, build_settings


def kube_configuration(*, kubeconfig: str | None = None, context: str | None = None) -> Configuration:
    """In a pod (service account present and no kubeconfig named): in-cluster; else KUBECONFIG."""
    configuration = Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        kube_config.load_incluster_config(client_configuration=configuration)
    else:
        kube_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    return configuration


def run(*, options: OperatorOptions, namespaces: Sequence[str] = (), liveness: str | None = None,
        verbose: bool = False) -> None:
    """Run until SIGTERM. With `namespaces`, only those are watched (a Role per namespace
    suffices); otherwise the whole cluster. With `options.peering`, operators that share the
    peering pause all but the highest priority one (kopf peering, which also gates the
    operator's own triggers: see peering.py)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # one INFO line per handler call and object adds up to real CPU at scale
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    registry, _ = build_registry(options, namespaces=namespaces)
    kopf.run(
        registry=registry, settings=build_settings(), clusterwide=not namespaces, namespaces=list(namespaces),
        liveness_endpoint=liveness, **kopf_peering(options),
    )


def kopf_peering(options: OperatorOptions) -> dict[str, Any]:
    """kopf's peering arguments, from the same options the operator's own peering watch uses
    (one identity for both, so neither takes the other's keep-alive for a peer)."""
    peering = options.peering
    if peering is None:
        return {"standalone": True}
    return {"standalone": False, "peering_name": peering.name, "priority": peering.priority,
            "identity": peering.identity}
