"""The CRD's CEL rules evaluated as the API server would, without one: the schema's structural
defaults applied first (only under objects that exist), then every `x-kubernetes-validations` rule
run with cel-python on each value at its path. For tests that hold pydantic and CEL to the same
rules (tests/unit/api)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import celpy

from aistack.api.crd import build_crd


def schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[*]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{*}}")


def cel_rules(root: dict[str, Any] | None = None) -> list[tuple[str, dict[str, str]]]:
    """Every `x-kubernetes-validations` rule of the schema, with the path of the value it judges."""
    return [(p, r) for p, node in walk(schema() if root is None else root)
            for r in node.get("x-kubernetes-validations", [])]


def _defaults(node: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict) and node.get("type") == "object":
        for name, child in node.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = _defaults(child, value[name])
        if isinstance(node.get("additionalProperties"), dict):
            for key in value:
                value[key] = _defaults(node["additionalProperties"], value[key])
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_defaults(node["items"], v) for v in value]
    return value


def _values_at(obj: Any, path: str) -> Iterator[Any]:
    if not path:
        yield obj
        return
    head, _, rest = path.lstrip(".").partition(".")
    parts = head.split("[*]")
    key = parts[0]
    if key.endswith("{*}"):
        if isinstance(obj, dict) and isinstance(obj.get(key[:-3]), dict):
            for v in obj[key[:-3]].values():
                yield from _values_at(v, rest and "." + rest)
        return
    if not isinstance(obj, dict) or key not in obj:
        return
    value = obj[key]
    if len(parts) > 1:
        for item in value if isinstance(value, list) else []:
            yield from _values_at(item, rest and "." + rest)
    else:
        yield from _values_at(value, rest and "." + rest)


def failed_cel_messages(manifest: dict[str, Any]) -> list[str]:
    """The messages of the CRD's CEL rules that `manifest` breaks."""
    root = schema()
    env = celpy.Environment()
    obj = _defaults(root, copy.deepcopy(manifest))
    failed = []
    for path, rule in cel_rules(root):
        program = env.program(env.compile(rule["rule"]))
        for value in _values_at(obj, path):
            if not program.evaluate({"self": celpy.json_to_cel(value)}):
                failed.append(rule["message"])
    return failed
