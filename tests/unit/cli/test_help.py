"""`--help` of every command reads like a mature CLI's: placeholders, not Python types; reflowed
paragraphs, not the docstring's own line breaks (typer 0.29 printed `<bool>`, `<list[Path]>`,
`{files}...` and kept each docstring line break)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from aistack.cli.main import app

ROOT = Path(__file__).resolve().parents[3]
COMMANDS = sorted(typer.main.get_group(app).commands)
TYPE_LABEL = re.compile(r"<(bool|str|int|float|path|list\[[^>]*\])>", re.IGNORECASE)


def help_text(*args: str, columns: int) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def paragraphs(text: str) -> list[list[str]]:
    """The description's paragraphs: after the usage line(s), before the first section."""
    lines = text.splitlines()
    body = lines[lines.index("") + 1:]
    found: list[list[str]] = [[]]
    for line in body:
        if re.fullmatch(r"[A-Z][a-z]+:", line):
            break
        if line.strip():
            found[-1].append(line)
        elif found[-1]:
            found.append([])
    return [p for p in found if p]


def test_every_command_is_checked() -> None:
    assert set(COMMANDS) >= {"validate", "crd", "render", "up", "ingest", "eval", "operator", "init-gitops",
                             "promote", "version"}


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_names_values_by_placeholder_and_reflows_paragraphs(command: str, columns: int) -> None:
    text = help_text(*([command] if command else []), columns=columns)
    assert not TYPE_LABEL.search(text), text
    usage = text.split("\n\n")[0]
    assert usage.startswith("Usage: ") and "{" not in usage, usage
    for option in re.findall(r"^\s+(--[a-z-]+ \S+)", text, re.MULTILINE):
        name, value = option.split(" ")
        assert value == "/" or value.isupper(), f"{name} takes {value!r}"  # `--x / --no-x` or a PLACEHOLDER
    # Reflowed: no line of a paragraph could have held the next line's first word. click's
    # formatter fills to the terminal's width up to 80, less a margin of 2.
    width = min(columns, 80) - 2
    for paragraph in paragraphs(text):
        for line, following in zip(paragraph, paragraph[1:], strict=False):
            assert len(line) + 1 + len(following.split()[0]) > width, f"broken early:\n{line}\n{following}"


def test_a_docstring_keeps_its_literal_brackets() -> None:
    """Rich markup read `[document]` as a style tag and dropped it."""
    assert "file[document]: field: message" in " ".join(help_text("validate", columns=120).split())


def test_the_installed_entry_point_prints_the_same_help() -> None:
    done = subprocess.run([sys.executable, "-m", "aistack.cli", "validate", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    assert "validate [OPTIONS] FILE..." in done.stdout
    assert "-q, --quiet  Print errors only" in done.stdout
