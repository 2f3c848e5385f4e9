"""The one YAML writer for what aistack writes for people and tools to read back.

Readers differ: kubectl and kustomize use Go YAML libraries with YAML 1.1 rules, where a bare
`y`, `n`, `on` or `off` is a boolean, and YAML 1.2 readers take `1e3` or `0o17` for numbers.
PyYAML quotes only what its own resolver would misread, so `y`, `n`, `1e3` and `0o17` came out
bare; here every string that some common reader would take for a bool or a number is quoted,
so rendered manifests, GitOps overlays, the CRD and config files read back as the strings they
are. libyaml's emitter is used when present (~10x faster; render runs on every reconcile).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, cast

import yaml

_STR = "tag:yaml.org,2002:str"
_AMBIGUOUS = re.compile(
    r"y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"  # YAML 1.1 bools
    r"|[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+"  # YAML 1.2 numbers
)
_Resolve = Callable[[type[yaml.Node], str, tuple[bool, bool]], str]
_BASE: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BASE):  # type: ignore[valid-type,misc]  # the C or the pure dumper, whichever exists
    pass


class _BlockDumper(_Dumper):
    """Multi-line strings (rendered config files) as `|` blocks, so a diff reads like the file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # What PyYAML's own resolver misreads it quotes already; quote the rest the same way, so
    # output that was right stays byte for byte (a config file's bytes are its pods' hash).
    if _AMBIGUOUS.fullmatch(value):
        resolve = cast(_Resolve, dumper.resolve)  # the stubs leave it untyped
        if resolve(yaml.ScalarNode, value, (True, False)) == _STR:
            return dumper.represent_scalar(_STR, value, style="'")
    return dumper.represent_str(value)


def _block_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar(_STR, value, style="|")
    return _str(dumper, value)


_Dumper.add_representer(str, _str)
_BlockDumper.add_representer(str, _block_str)


def dump(data: Any, *, sort_keys: bool = False, blocks: bool = False) -> str:
    """Block-style YAML, keys in insertion order unless `sort_keys`; `blocks` writes multi-line
    strings as `|` literals."""
    return yaml.dump(data, Dumper=_BlockDumper if blocks else _Dumper, sort_keys=sort_keys,
                     default_flow_style=False, width=100, allow_unicode=True)


def dump_all(documents: Iterable[Any], *, blocks: bool = False) -> str:
    """A multi-document stream (`---` between documents), keys in insertion order."""
    return yaml.dump_all(documents, Dumper=_BlockDumper if blocks else _Dumper, sort_keys=False,
                         default_flow_style=False, width=100, allow_unicode=True)
