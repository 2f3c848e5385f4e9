"""Turn pydantic's validation errors into one line per broken field, named by its path.

Every consumer (CLI, operator conditions, the gateway's config loader) shows these lines,
so a user reads the same `spec.model.vllm.gpu.count: ...` wherever the manifest is checked.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from aistack.api.rules import Loc, RuleViolation
from aistack.api.types import DNS1123_LABEL, DNS1123_SUBDOMAIN, models_in
from aistack.api.v1alpha1.model import ADAPTER_NAME_PATTERN, ADAPTER_SOURCE_PATTERN
from aistack.api.v1alpha1.stack import DNS1035_LABEL


_PATTERN_NAMES = {
    DNS1123_LABEL: "a DNS-1123 label (lower-case letters, digits and '-', starting and ending alphanumeric)",
    DNS1123_SUBDOMAIN: "a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')",
    DNS1035_LABEL: "a DNS-1035 label (lower-case letters, digits and '-', starting with a letter)",
    ADAPTER_NAME_PATTERN: "an adapter name (letters, digits, '.', '_' and '-', starting and ending "
                          "alphanumeric)",
    ADAPTER_SOURCE_PATTERN: "an adapter source: hf://org/repo[@revision], s3://bucket/prefix, or a relative "
                            "path without '..' or hidden parts (in the model cache)",
}


@dataclass(frozen=True)
class FieldError:
    """One broken field: where (`spec.model.name`) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def format_loc(loc: Loc) -> str:
    """`('spec', 'tools', 0, 'name')` -> `spec.tools[0].name`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<document>"


Aliases = Mapping[str, Mapping[str, str]]
"""Parent path -> {word users type: the field meant}; see `aistack.api.v1alpha1.aliases`."""


def field_errors(err: ValidationError, *, root: type[BaseModel] | None = None,
                 aliases: Aliases | None = None) -> list[FieldError]:
    """Flatten a ValidationError; cross-field rule violations keep their exact sub-paths.

    With `root`, an unknown field gets a hint: another casing of a real field, then a word from
    `aliases`, then the closest spelling, else the fields known there.
    """
    result: list[FieldError] = []
    for item in err.errors(include_url=False):
        loc: Loc = tuple(item["loc"])
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, RuleViolation):
            result.extend(FieldError(format_loc(loc + sub), msg) for sub, msg in cause.issues)
            continue
        result.append(FieldError(format_loc(loc), _message(item, loc, root, aliases or {})))
    return result


def _message(item: ErrorDetails, loc: Loc, root: type[BaseModel] | None, aliases: Aliases) -> str:
    kind = item["type"]
    msg: str = item["msg"]
    if kind == "extra_forbidden":
        return "unknown field" + _unknown_field_hint(loc, root, aliases)
    if kind == "missing":
        return "required field is missing"
    if kind in ("model_type", "dict_type"):
        known = _known_fields(root, loc) if root is not None and kind == "model_type" else []
        fields = f" ({', '.join(known[:4])}, ...)" if known else ""
        return f"expected a mapping of fields{fields}, got {_yaml_kind(item['input'])}"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if kind == "string_pattern_mismatch" and "pattern" in (item.get("ctx") or {}):
        pattern = item["ctx"]["pattern"]
        msg = f"{item['input']!r} is not {_PATTERN_NAMES[pattern]}" if pattern in _PATTERN_NAMES \
            else f"{item['input']!r} does not match {pattern}"
    return msg


def _unknown_field_hint(loc: Loc, root: type[BaseModel] | None, aliases: Aliases) -> str:
    if root is None or not loc:
        return ""
    parent, name = loc[:-1], _normal(str(loc[-1]))
    known = _known_fields(root, parent)
    same = [field for field in known if _normal(field) == name]
    if same:
        return f"; did you mean {same[0]!r}? (fields are camelCase)"
    schema_parent = ".".join(str(part) for part in parent if not isinstance(part, int))
    meant = {_normal(word): target for word, target in aliases.get(schema_parent, {}).items()}.get(name)
    if meant is not None:
        if meant.startswith("spec."):
            return f"; did you mean {meant}? it is set there, not under {format_loc(parent)}"
        if "." in meant:
            return f"; did you mean {meant!r} ({format_loc(parent)}.{meant})?"
        return f"; did you mean {meant!r}?"
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known fields here: {', '.join(known)}" if known else ""


def _yaml_kind(value: object) -> str:
    """What a value is, in YAML's words."""
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"),
                       (list, "a list"), (dict, "a mapping")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _normal(word: str) -> str:
    """`base_url`, `baseURL` and `base-url` all read as `baseurl`."""
    return word.replace("_", "").replace("-", "").lower()


def _known_fields(root: type[BaseModel], loc: Loc) -> list[str]:
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return []
        inner = models_in(field.annotation)
        model = inner[0] if len(inner) == 1 else None
    return [f.alias or n for n, f in model.model_fields.items()] if model is not None else []
