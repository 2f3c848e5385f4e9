"""YAML writing that every kustomize reads back as the same values.

kustomize converts JSON 6902 patch values with YAML 1.1 rules, where an unquoted `n`, `y`,
`on` or `off` is a boolean; PyYAML (its own 1.1 subset) writes those strings bare. So every file
aistack writes for kustomize quotes them.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_YAML11_BOOLS = re.compile(r"y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF")


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if _YAML11_BOOLS.fullmatch(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_Dumper.add_representer(str, _str)


def dump(data: Any) -> str:
    """Block-style YAML, keys in insertion order, ambiguous strings quoted."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100,
                     allow_unicode=True)
