"""Reloading the gateway config atomically when its file changes.

In a pod the file is a ConfigMap mount, updated in place through a symlink swap (read by
`aistack.runtime.core.config`). A reload builds a complete new `GatewayState` before swapping
one reference: requests in flight keep the state they started with, and a new config that
does not validate (or whose secrets are missing) is refused, logged and counted while the old
one keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aistack.api.gateway_config import GatewayConfig
from aistack.runtime.core.config import load_config

log = logging.getLogger("aistack.gateway.config")


class ConfigWatcher:
    """Polls the config file and calls `apply(config)` when its content changes.

    Polling the content (not inotify) works for ConfigMap symlink swaps and every filesystem,
    and a small YAML read each second costs nothing measurable.
    """

    def __init__(self, *, path: Path, apply: Callable[[GatewayConfig], Awaitable[None]],
                 on_refused: Callable[[str], None], interval_s: float = 1.0) -> None:
        self.path = path
        self.apply = apply
        self.on_refused = on_refused
        self.interval_s = interval_s
        self._digest = self._read_digest()
        self._task: asyncio.Task[None] | None = None

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="aistack-config-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def check_now(self) -> bool:
        """Reload when the file changed; True when a new config was applied."""
        digest = self._read_digest()
        if digest is None or digest == self._digest:
            return False
        self._digest = digest
        try:
            config = load_config(self.path)
            await self.apply(config)
        except Exception as err:  # any reason: keep serving the old config
            log.error("refused the new gateway config, still serving the previous one: %s", err)
            self.on_refused(str(err))
            return False
        log.info("gateway config reloaded from %s", self.path)
        return True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check_now()
