"""`Check`: the state of one layer as a status condition will show it.

A module of its own because two sides produce checks that `status` turns into conditions:
`status` from the children the API server reports, `collection` from the Qdrant collection;
neither of the two needs to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Check:
    """A layer's state: status True/False, a CamelCase reason, a message."""

    ok: bool
    reason: str
    message: str = ""
