"""`aistack operator`: run the AIStack operator against the current cluster."""

from __future__ import annotations


def run_operator(*, namespaces: list[str], kubeconfig: str | None, liveness: str, standalone: bool,
                 peering: str | None, priority: int, drift_interval: float, leader_elect: bool,
                 leader_namespace: str | None, verbose: bool) -> None:
    """Raises ValueError (naming the flag) for options that do not fit together."""
    from aistack.operator.run import check_liveness, check_namespaces, operator_options, run

    namespaces, probe = check_namespaces(namespaces), check_liveness(liveness)
    options = operator_options(kubeconfig=kubeconfig, drift_interval=drift_interval, standalone=standalone,
                               priority=priority, peering=peering, leader_elect=leader_elect,
                               leader_namespace=leader_namespace)
    run(options=options, namespaces=namespaces, liveness=probe, verbose=verbose)
