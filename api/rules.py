"""Cross-field rule violations that keep their exact field path.

A pydantic model validator can only fail at the model's own location. Rules such as
"tensorParallelSize must divide gpu.count" should point at the field that is wrong, so a
validator raises `RuleViolation` carrying paths relative to its model; `aistack.api.errors`
joins them to the model's location when it formats the error for a user.
"""

from __future__ import annotations

from collections.abc import Iterable

Loc = tuple[str | int, ...]


class RuleViolation(ValueError):
    """One or more broken cross-field rules; each has a path relative to the model."""

    def __init__(self, issues: Iterable[tuple[Loc, str]]) -> None:
        self.issues: list[tuple[Loc, str]] = list(issues)
        super().__init__("; ".join(f"{'.'.join(map(str, loc)) or '<self>'}: {msg}"
                                   for loc, msg in self.issues))


class RuleCollector:
    """Collects violations so a validator reports every broken rule at once, not the first."""

    def __init__(self) -> None:
        self.issues: list[tuple[Loc, str]] = []

    def add(self, loc: Loc, message: str) -> None:
        self.issues.append((loc, message))

    def raise_if_any(self) -> None:
        if self.issues:
            raise RuleViolation(self.issues)


def violation(loc: Loc, message: str) -> RuleViolation:
    """A single violation, for validators with one rule."""
    return RuleViolation([(loc, message)])
