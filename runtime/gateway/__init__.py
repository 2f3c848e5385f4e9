"""The OpenAI-compatible gateway: `create_app` is the public face."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:  # lazy: submodules (errors, metrics) import without the app
    if name == "create_app":
        from aistack.runtime.gateway.app import create_app

        return create_app
    raise AttributeError(name)
