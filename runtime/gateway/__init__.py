"""The OpenAI-compatible gateway: `create_app` is the public face."""

from aistack.runtime.gateway.app import create_app

__all__ = ["create_app"]
