"""Turn pydantic's validation errors into one line per broken field, named by its path.

Every consumer (CLI, operator conditions, the gateway's config loader) shows these lines,
so a user reads the same `spec.model.vllm.gpu.count: ...` wherever the manifest is checked.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from aistack.api.rules import Loc, RuleViolation
from aistack.api.types import DNS1123_LABEL, DNS1123_SUBDOMAIN, models_in
from aistack.api.v1alpha1.stack import DNS1035_LABEL


_PATTERN_NAMES = {
    DNS1123_LABEL: "a DNS-1123 label (lower-case letters, digits and '-', starting and ending alphanumeric)",
    DNS1123_SUBDOMAIN: "a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')",
    DNS1035_LABEL: "a DNS-1035 label (lower-case letters, digits and '-', starting with a letter)",
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


def field_errors(err: ValidationError, *, root: type[BaseModel] | None = None) -> list[FieldError]:
    """Flatten a ValidationError; cross-field rule violations keep their exact sub-paths."""
    result: list[FieldError] = []
    for item in err.errors(include_url=False):
        loc: Loc = tuple(item["loc"])
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, RuleViolation):
            result.extend(FieldError(format_loc(loc + sub), msg) for sub, msg in cause.issues)
            continue
        result.append(FieldError(format_loc(loc), _message(item, loc, root)))
    return result


def _message(item: dict[str, Any], loc: Loc, root: type[BaseModel] | None) -> str:
    kind = item["type"]
    msg: str = item["msg"]
    if kind == "extra_forbidden":
        known = _known_fields(root, loc[:-1]) if root else []
        name = str(loc[-1]) if loc else ""
        hint = difflib.get_close_matches(name, known, n=1)
        if hint:
            return f"unknown field; did you mean {hint[0]!r}?"
        return f"unknown field; known fields here: {', '.join(known)}" if known else "unknown field"
    if kind == "missing":
        return "required field is missing"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if kind == "string_pattern_mismatch" and "pattern" in (item.get("ctx") or {}):
        pattern = item["ctx"]["pattern"]
        msg = f"{item['input']!r} is not {_PATTERN_NAMES[pattern]}" if pattern in _PATTERN_NAMES \
            else f"{item['input']!r} does not match {pattern}"
    return msg


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
