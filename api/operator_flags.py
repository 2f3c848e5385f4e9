"""The operator's command line, declared once: `OperatorFlags` is the table (a field per flag:
its name, type, default, help), and both entry points are built from it:
`python -m aistack.operator` (argparse, the operator image) and `aistack operator` (typer, in
`aistack.cli.operator`). So the two accept the same flags and parse them to the same values.
In api/ because it is a contract: whatever starts the operator (the install) names these flags.

No flag is read from an environment variable by the parser: the two fallbacks the help names
(`$KUBECONFIG`, `POD_NAMESPACE`) are resolved where the value is used (`kube_configuration()`,
`lease_namespace()`), each after other sources, so the parser leaves them unset.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_HELP, _SHORT, _METAVAR = "help", "short", "metavar"


def _flag(default: Any, help: str, *, short: str | None = None, metavar: str | None = None) -> Any:
    return dataclasses.field(default=default, metadata={_HELP: help, _SHORT: short, _METAVAR: metavar})


@dataclass(frozen=True, kw_only=True)
class OperatorFlags:
    """The flags as given; `aistack.operator.run.startup()` checks them. Field `drift_interval`
    is flag `--drift-interval`; a `tuple[str, ...]` field is a repeatable flag, a `bool` one a
    switch."""

    namespace: tuple[str, ...] = _flag(
        (), "Watch only this namespace (repeatable); default: the whole cluster.", short="-n",
        metavar="NAMESPACE")
    kubeconfig: str | None = _flag(
        None, "Kubeconfig file; default: in-cluster, else $KUBECONFIG.", metavar="FILE")
    liveness: str = _flag(
        "http://0.0.0.0:8081/healthz", "Liveness endpoint URL; empty for none.", metavar="URL")
    standalone: bool = _flag(False, "No peering (no guard against a second operator).")
    peering: str | None = _flag(
        None, "Join this kopf peering and wait (paused) while its object is missing, as the install runs; "
              "default: the 'aistack' peering where it exists, else none.", metavar="NAME")
    priority: int = _flag(0, "Peering priority: the highest running operator works.", metavar="INTEGER")
    drift_interval: float = _flag(300.0, "Seconds between full re-checks of each stack.", metavar="SECONDS")
    leader_elect: bool = _flag(
        False, "Replicas elect one leader through a Lease; the others wait as standbys.")
    leader_election_namespace: str | None = _flag(
        None, "Namespace of the Lease; default: the pod's own (POD_NAMESPACE).", metavar="NAMESPACE")
    verbose: bool = _flag(False, "Log at DEBUG, with kopf's line per handler call and object.", short="-v")

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> OperatorFlags:
        """From a parser's values by field name (either parser: lists become tuples)."""
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, (list, tuple)) else v
                                  for k, v in values.items()}
        return cls(**fields)


@dataclass(frozen=True, kw_only=True)
class Flag:
    """One row of the table, as a parser needs it."""

    field: str
    names: tuple[str, ...]
    """The long name first (`--drift-interval`), then the short one if any."""
    value_type: type
    """bool, int, float or str (the item type of a repeatable flag)."""
    default: Any
    help: str
    metavar: str | None
    repeated: bool


def flag_table() -> list[Flag]:
    hints = typing.get_type_hints(OperatorFlags)
    table = []
    for item in dataclasses.fields(OperatorFlags):
        hint, repeated = hints[item.name], False
        if typing.get_origin(hint) is tuple:
            (hint, _), repeated = typing.get_args(hint), True
        elif typing.get_origin(hint) is types.UnionType:
            (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        short = item.metadata[_SHORT]
        names = (f"--{item.name.replace('_', '-')}", *([short] if short else []))
        table.append(Flag(field=item.name, names=names, value_type=hint, default=item.default,
                          help=item.metadata[_HELP], metavar=item.metadata[_METAVAR], repeated=repeated))
    return table


def argument_parser(*, prog: str, description: str | None) -> argparse.ArgumentParser:
    """`python -m aistack.operator`'s parser; `OperatorFlags.of(vars(parser.parse_args()))`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for flag in flag_table():
        unset = flag.default is None or flag.default is False or flag.default == ()
        shown = "" if unset else f" [default: {flag.default}]"  # as typer shows it
        if flag.value_type is bool:
            parser.add_argument(*flag.names, dest=flag.field, action="store_true", help=flag.help)
        elif flag.repeated:
            parser.add_argument(*flag.names, dest=flag.field, action="append", type=flag.value_type,
                                default=[], metavar=flag.metavar, help=flag.help)
        else:
            parser.add_argument(*flag.names, dest=flag.field, type=flag.value_type, default=flag.default,
                                metavar=flag.metavar, help=flag.help + shown)
    return parser
