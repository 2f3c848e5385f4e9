"""`python -m aistack.operator`: run the AIStack operator (same flags as `aistack operator`)."""

from __future__ import annotations

import sys

from aistack.api.operator_flags import OperatorFlags, argument_parser
from aistack.operator.run import ClusterConfigError, run, startup


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(prog="python -m aistack.operator", description=__doc__)
    flags = OperatorFlags.of(vars(parser.parse_args(argv)))
    try:
        start = startup(flags)
    except ClusterConfigError as err:  # not a usage error: one line, no usage text
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as err:
        parser.error(str(err))
    run(options=start.options, namespaces=start.namespaces, liveness=start.liveness, verbose=start.verbose)


if __name__ == "__main__":
    main()
