"""`python -m aistack.operator`: run the AIStack operator (same options as `aistack operator`)."""

from __future__ import annotations

import argparse

from aistack.operator.run import check_liveness, check_namespaces, operator_options, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aistack.operator", description=__doc__)
    parser.add_argument("--namespace", "-n", action="append", default=[],
                        help="watch only this namespace (repeatable); default: the whole cluster")
    parser.add_argument("--kubeconfig", help="kubeconfig file; default: in-cluster, else $KUBECONFIG")
    parser.add_argument("--liveness", default="http://0.0.0.0:8081/healthz",
                        help="liveness endpoint URL; empty for none")
    parser.add_argument("--standalone", action="store_true", help="no peering (no guard against a second operator)")
    parser.add_argument("--peering", metavar="NAME",
                        help="join this kopf peering and wait (paused) while its object is missing, as the "
                             "install runs; default: the 'aistack' peering where it exists, else none")
    parser.add_argument("--priority", type=int, default=0, help="peering priority (the highest one runs)")
    parser.add_argument("--leader-elect", action="store_true",
                        help="replicas elect one leader through a Lease; the others wait as standbys")
    parser.add_argument("--leader-election-namespace",
                        help="namespace of the Lease; default: the pod's own (POD_NAMESPACE)")
    parser.add_argument("--drift-interval", type=float, default=300.0, help="seconds between full re-checks")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    try:
        namespaces, liveness = check_namespaces(args.namespace), check_liveness(args.liveness)
        options = operator_options(kubeconfig=args.kubeconfig, drift_interval=args.drift_interval,
                                   standalone=args.standalone, priority=args.priority, peering=args.peering,
                                   leader_elect=args.leader_elect,
                                   leader_namespace=args.leader_election_namespace)
    except ValueError as err:
        parser.error(str(err))
    run(options=options, namespaces=namespaces, liveness=liveness, verbose=args.verbose)


if __name__ == "__main__":
    main()
