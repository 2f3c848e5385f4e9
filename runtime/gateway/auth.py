"""Who is calling: `authenticate()`, which every route but the probes and /metrics calls first.

Bearer API keys are read from the environment variable the config names. The variable holds
one key per line, `key` or `key tenant`; blank lines and `#` comments are ignored. Keys are
compared by SHA-256 digest so the lookup time does not depend on how much of a guessed key
matches.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from aistack.api.types import SecretKeyRef
from aistack.runtime.gateway.canary import VERSION_HEADER, Split, pinned_version
from aistack.runtime.gateway.errors import GatewayError

if TYPE_CHECKING:  # state.py builds ApiKeys, so it imports this module
    from aistack.runtime.gateway.state import GatewayState


@dataclass(frozen=True)
class Caller:
    """Who is calling: `tenant` scopes retrieval."""

    authenticated: bool
    tenant: str | None
    sticky: str | None = None
    """What keeps this caller's conversation on one version of a canary split (its API key, tenant
    or header, as `spec.model.canary.stickyBy` says); None: no split, or the request has none."""
    pinned: str | None = None
    """The version the request asks for (`x-aistack-model-version`), past the split."""


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
                raise ValueError(
                    f"{source} line {number}: expected 'key' or 'key tenant', got {len(parts)} fields")
            keys[_digest(parts[0])] = parts[1] if len(parts) == 2 else None
        if not keys:
            raise ValueError(f"{source} holds no API key: add one key per line ('key' or 'key tenant')")
        return cls(keys)

    @classmethod
    def from_env(cls, name: str, *, secret: SecretKeyRef | None = None) -> ApiKeys:
        """The keys in variable `name`; `secret` is the manifest's ref that fills it, for the messages."""
        value = os.environ.get(name)
        if not value:
            raise ValueError(_unset_message(name, secret))
        source = f"${name}" if secret is None else f"${name} (the Secret {secret.name} key {secret.key})"
        return cls.parse(value, source=source)

    @property
    def without_tenant(self) -> int:
        """How many keys name no tenant: their callers choose one with the tenant header."""
        return sum(tenant is None for tenant in self._keys.values())

    def lookup(self, key: str) -> tuple[bool, str | None]:
        digest = _digest(key)
        if digest in self._keys:
            return True, self._keys[digest]
        return False, None


def authenticate(request: Request, state: GatewayState) -> tuple[Caller, str | None]:
    """The caller and the tenant retrieval is scoped to (the key's tenant, else the tenant header).

    Without keys configured everyone is let in with the header's tenant; with keys, a missing or
    unknown key is answered 401 before any work is done.
    """
    header_tenant = request.headers.get(state.config.server.tenant_header) or None
    split = state.canary.split if state.canary is not None else None
    if state.api_keys is None:
        sticky = split.sticky_key(request, api_key=None, tenant=header_tenant) if split else None
        pinned = _pinned(request, split)
        caller = Caller(authenticated=False, tenant=header_tenant, sticky=sticky, pinned=pinned)
        return caller, header_tenant
    auth = request.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise GatewayError(401, "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    ok, key_tenant = state.api_keys.lookup(key.strip())
    if not ok:
        raise GatewayError(401, "invalid API key", code="invalid_api_key")
    tenant = key_tenant or header_tenant
    sticky = split.sticky_key(request, api_key=key.strip(), tenant=tenant) if split else None
    pinned = _pinned(request, split)
    return Caller(authenticated=True, tenant=tenant, sticky=sticky, pinned=pinned), tenant


def _pinned(request: Request, split: Split | None) -> str | None:
    """The version pinned by `VERSION_HEADER`; without a split only 'canary' matters, and is refused:
    answered by the stable model, an evaluation of "the canary" would compare stable with itself."""
    if split is not None:
        return pinned_version(request)
    if request.headers.get(VERSION_HEADER) == "canary":
        raise GatewayError(409, f"{VERSION_HEADER}: 'canary', but this gateway serves no canary (none in "
                                "spec.model.canary, or its config has not reached this gateway yet)",
                           code="canary_not_served")
    return None


def _unset_message(name: str, secret: SecretKeyRef | None) -> str:
    """Said in the manifest's terms: the field, the variable to export locally, the Secret in a pod."""
    what = "one 'key' or 'key tenant' per line"
    if secret is None:  # a hand-written config, or one rendered before it carried the ref
        return (f"the gateway's API keys are read from ${name}, which is unset or empty: set it ({what}), "
                "or remove spec.gateway.apiKeysSecretRef from the manifest (server.apiKeysEnv in a "
                "hand-written gateway config) to serve without keys")
    return (f"spec.gateway.apiKeysSecretRef asks for API keys, but ${name} is unset or empty. "
            f"On this machine: export {name} with {what}. In a pod the variable comes from the Secret "
            f"{secret.name} key {secret.key}: put {what} there. Or remove spec.gateway.apiKeysSecretRef to "
            "serve without keys")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
