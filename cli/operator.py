"""`aistack operator`: run the AIStack operator against the current cluster.

Its options are the table in `aistack.api.operator_flags`, the one `python -m aistack.operator`
is built from: `operator_cmd` shows typer one keyword parameter per flag.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

from aistack.api.operator_flags import Flag, OperatorFlags, flag_table

err = Console(stderr=True, highlight=False, soft_wrap=True)


def _parameter(flag: Flag) -> inspect.Parameter:
    option = typer.Option(*flag.names, help=flag.help, metavar=flag.metavar)
    if flag.repeated:
        annotation: Any = types.GenericAlias(list, (flag.value_type,))
        default: Any = list(flag.default)
    elif flag.default is None:
        annotation, default = flag.value_type | None, None
    else:
        annotation, default = flag.value_type, flag.default
    return inspect.Parameter(flag.field, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, option])


def _taking_flags(command: Callable[..., None]) -> Callable[..., None]:
    """`command`, as typer sees it: a keyword parameter per operator flag."""
    seen: Any = command
    seen.__signature__ = inspect.Signature([_parameter(flag) for flag in flag_table()])
    return command


@_taking_flags
def operator_cmd(**values: Any) -> None:
    """Run the AIStack operator (kopf) until interrupted."""
    from aistack.operator.run import run, startup

    try:
        start = startup(OperatorFlags.of(values))
        run(options=start.options, namespaces=start.namespaces, liveness=start.liveness,
            verbose=start.verbose)
    except ValueError as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(2) from None
