"""`aistack operator`: run the AIStack operator against the current cluster."""

from __future__ import annotations


def run_operator(*, namespaces: list[str], kubeconfig: str | None, liveness: str, standalone: bool,
                 priority: int, drift_interval: float, verbose: bool) -> None:
    from aistack.operator.handlers import OperatorOptions
    from aistack.operator.peering import PeeringOptions
    from aistack.operator.run import kube_configuration, run

    options = OperatorOptions(configuration=kube_configuration(kubeconfig=kubeconfig), drift_interval=drift_interval,
                              peering=None if standalone else PeeringOptions(priority=priority))
    run(options=options, namespaces=namespaces, liveness=liveness, verbose=verbose)
