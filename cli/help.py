"""How `aistack ... --help` reads: plain text like kubectl's and pip's.

typer 0.29 labels every parameter with its Python type (`<bool>` on a flag, `<list[Path]>`,
`<str>`) and braces required arguments in the usage line (`{files}...`), on purpose (its
"metavar printing" change); its rich panels also keep a docstring's own line breaks in the
middle of a sentence and read `[document]` as markup. `App` turns the rich panels off
(`rich_markup_mode=None`: click's formatter reflows each paragraph to the terminal and shows
a flag bare), and makes every command a `HelpCommand`, which puts the usual placeholders back:
`FILE...` in the usage line, `--repo DIR`, `--port INTEGER`. A parameter's own `metavar=`
wins; the type gives the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import typer
from typer.core import TyperArgument, TyperCommand, TyperOption

if TYPE_CHECKING:
    # typer 0.29 vendors click as typer._click: the contexts its commands are given are this
    # class (typer.Context only marks a callback's parameter for injection).
    from typer._click import Context, HelpFormatter

_PLACEHOLDERS: dict[Any, str] = {int: "INTEGER", float: "NUMBER", str: "TEXT", Path: "PATH"}


class App(typer.Typer):
    """`typer.Typer` with plain help, and `HelpCommand` for every command it registers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(rich_markup_mode=None, **kwargs)

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or HelpCommand, **kwargs)


class HelpCommand(TyperCommand):
    """A typer command whose help names each value by a placeholder, not a Python type."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.metavar is None and isinstance(param, TyperArgument):
                param.metavar = (param.name or "ARG").upper()
            elif param.metavar is None and isinstance(param, TyperOption) and not (param.is_flag
                                                                                   or param.count):
                param.metavar = placeholder(param)

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):
                arguments.append((argument_name(param), record[1]))  # the name alone: no `<type>` label
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def argument_name(param: TyperArgument) -> str:
    """`FILE...` for an argument that takes several values, `MANIFEST` for one."""
    return f"{param.metavar}..." if param.nargs != 1 else str(param.metavar)


def placeholder(param: TyperOption) -> str:
    """The value's placeholder from its type: `PATH`, `INTEGER`, `NUMBER`, `TEXT`."""
    annotation = param.type_descriptor.annotation
    if param.type_descriptor.is_list:
        (annotation,) = get_args(annotation) or (str,)
    if param.type_descriptor.is_path:
        return "PATH"
    return _PLACEHOLDERS.get(annotation, "VALUE")
