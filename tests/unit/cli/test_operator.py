"""`aistack operator` and `python -m aistack.operator` are built from one table of flags
(`aistack.api.operator_flags`): they list the same flags and parse an argv to the same values."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from aistack.cli.main import app
from aistack.api.operator_flags import OperatorFlags, argument_parser, flag_table

FLAG = re.compile(r"(?<![\w-])--?[a-z][a-z-]*")


def typer_values(argv: list[str]) -> dict[str, Any]:
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    # a copy: click consumes the list it parses
    with group.commands["operator"].make_context("operator", list(argv)) as context:
        return dict(context.params)


def argparse_values(argv: list[str]) -> dict[str, Any]:
    return vars(argument_parser(prog="python -m aistack.operator", description=None).parse_args(argv))


@pytest.mark.parametrize("argv", [
    [],
    ["-n", "team-a", "--namespace", "team-b", "--kubeconfig", "/k", "--liveness", "", "--standalone",
     "--priority", "7", "--drift-interval", "2.5", "--leader-elect", "--leader-election-namespace", "ops",
     "-v"],
    ["--peering=aistack", "--priority=100", "--liveness=http://0.0.0.0:9/h", "--verbose"],
])
def test_both_entry_points_parse_an_argv_to_the_same_flags(argv: list[str]) -> None:
    assert OperatorFlags.of(typer_values(argv)) == OperatorFlags.of(argparse_values(argv))


def test_the_values_are_the_ones_given_and_the_defaults_the_tables() -> None:
    assert OperatorFlags.of(argparse_values([])) == OperatorFlags()
    given = OperatorFlags.of(typer_values(["-n", "a", "-n", "b", "--priority", "7", "--drift-interval", "2.5",
                                           "--leader-elect"]))
    assert (given.namespace, given.priority, given.drift_interval) == (("a", "b"), 7, 2.5)
    assert given.leader_elect and not given.standalone


def test_both_help_texts_list_the_same_flags() -> None:
    typer_help = CliRunner().invoke(app, ["operator", "--help"]).output
    module_help = subprocess.run([sys.executable, "-m", "aistack.operator", "--help"], capture_output=True,
                                 text=True, check=True, timeout=60).stdout
    declared = {name for flag in flag_table() for name in flag.names}
    assert len(declared) == 12  # 10 flags, 2 of them with a short name
    assert set(FLAG.findall(typer_help.partition("Options:")[2])) - {"--help"} == declared
    assert set(FLAG.findall(module_help.partition("options:")[2])) - {"--help", "-h"} == declared


def test_a_bad_value_is_refused_by_both_with_exit_code_2() -> None:
    assert CliRunner().invoke(app, ["operator", "--priority", "high"]).exit_code == 2
    with pytest.raises(SystemExit) as exit_:
        argparse_values(["--priority", "high"])
    assert exit_.value.code == 2
