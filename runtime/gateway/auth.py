"""Bearer API keys, read from the environment variable the config names.

The variable holds one key per line, `key` or `key tenant`; blank lines and `#` comments are
ignored. Keys are compared by SHA-256 digest so the lookup time does not depend on how much of
a guessed key matches.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """Who is calling: `tenant` scopes retrieval."""

    authenticated: bool
    tenant: str | None


class ApiKeys:
    """The accepted keys; an empty set is refused at build time (it would lock everyone out)."""

    def __init__(self, keys: dict[bytes, str | None]) -> None:
        self._keys = keys

    @classmethod
    def parse(cls, text: str, *, source: str) -> ApiKeys:
        keys: dict[bytes, str | None] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) > 2:
                raise ValueError(f"{source} line {number}: expected 'key' or 'key tenant', got {len(parts)} fields")
            keys[_digest(parts[0])] = parts[1] if len(parts) == 2 else None
        if not keys:
            raise ValueError(f"{source} holds no API key: add one key per line ('key' or 'key tenant')")
        return cls(keys)

    @classmethod
    def from_env(cls, name: str) -> ApiKeys:
        value = os.environ.get(name)
        if not value:
            raise ValueError(f"API keys are configured in env var {name}, but it is unset or empty; "
                             "set it (one 'key [tenant]' per line) or remove server.apiKeysEnv")
        return cls.parse(value, source=f"env var {name}")

    def lookup(self, key: str) -> tuple[bool, str | None]:
        digest = _digest(key)
        if digest in self._keys:
            return True, self._keys[digest]
        return False, None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
