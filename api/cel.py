"""CEL rules (`x-kubernetes-validations`) that let the API server refuse what pydantic refuses.

Each model that has cross-field rules also declares them in CEL via `cel_rules(...)`, next to
its pydantic validator, so `kubectl apply` fails fast with the same reason. The rules use
`has()` guards throughout: defaulting only happens for fields the user wrote a parent of.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict


def rule(expr: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry."""
    out = {"rule": expr, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


def cel_rules(*rules: dict[str, str]) -> ConfigDict:
    """A model_config fragment that puts the rules into the model's JSON schema."""
    extra: dict[str, Any] = {"x-kubernetes-validations": list(rules)}
    return ConfigDict(json_schema_extra=extra)
