"""List+watch, the API server's protocol for keeping objects in memory: list (resourceVersion R),
then watch from R with bookmarks; `410 Gone` (R compacted away) or a broken stream means list
again, which also notices what was deleted meanwhile. One stream per kind and watched namespace
(or cluster-wide), over aiohttp; credentials come from the same `Configuration` as the
operator's client (a rotating service-account token is re-read on every connect).

`ListWatch` follows the streams; what to keep of each object is its subclass's (`_key`,
`_keep`, `_drop`): the operator's caches in `watch.py`, the peering in `peering.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import aiohttp
from kubernetes.client import Configuration

from aistack.operator.kube import Kind

log = logging.getLogger("aistack.operator.watch")
WATCH_TIMEOUT = 300
"""Seconds the server keeps one watch open; the stream is then resumed from the last version."""
BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)


def watch_backoff(failures: int) -> float:
    """Seconds before listing again after `failures` failures in a row: BACKOFF's step, between
    half and all of it at random, so that the streams an API server's restart broke (of this
    operator and of its peers) do not all come back in the same instant."""
    return BACKOFF[min(failures, len(BACKOFF) - 1)] * random.uniform(0.5, 1.0)


class NotServed(RuntimeError):
    """A list answered 404: the API server does not serve the kind (its CRD is not installed)."""


K = TypeVar("K", bound=Hashable)
"""The key a cache files an object under."""


class ListWatch(Generic[K]):
    """List+watch streams for `kinds` (per namespace, or cluster-wide); subclasses keep what
    they need of each object (`_keep`, `_drop`) under the key `_key` gives it."""

    selector: str | None = None
    """A label selector every list and watch carries (None: every object)."""

    def __init__(self, *, configuration: Configuration, namespaces: Sequence[str],
                 kinds: Sequence[Kind]) -> None:
        self.configuration = configuration
        scopes: list[str | None] = [*namespaces] or [None]
        self.streams = [(kind, ns) for kind in kinds for ns in scopes]
        self.synced = asyncio.Event()
        self._listed: set[tuple[str, str | None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    # -- what a subclass keeps -------------------------------------------------------------
    def _key(self, kind: Kind, obj: Mapping[str, Any]) -> K | None:
        """The key of an object in this cache; None: not one of ours, ignored."""
        raise NotImplementedError

    def _held(self, kind: Kind, namespace: str | None) -> list[K]:
        """The keys this cache holds from the stream of (kind, namespace)."""
        raise NotImplementedError

    def _keep(self, key: K, obj: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _drop(self, key: K) -> None:
        raise NotImplementedError

    @property
    def started(self) -> bool:
        return bool(self._tasks)

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10, sock_read=WATCH_TIMEOUT + 30)
        # Large objects (a ConfigMap with its last-applied copy) are one line each in a watch stream.
        self._session = aiohttp.ClientSession(timeout=timeout, read_bufsize=2 ** 22,
                                              connector=aiohttp.TCPConnector(ssl=self._ssl()))
        self._tasks = [asyncio.create_task(self._run(kind, ns), name=f"watch {kind.plural} {ns or '*'}")
                       for kind, ns in self.streams]

    async def wait_synced(self, timeout: float) -> None:
        await asyncio.wait_for(self.synced.wait(), timeout)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # -- one stream ------------------------------------------------------------------------
    async def _run(self, kind: Kind, namespace: str | None) -> None:
        failures = 0
        while True:
            try:
                version: str | None = await self._list(kind, namespace)
                failures = 0
                while version is not None:
                    version = await self._watch(kind, namespace, version)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # connection refused, 5xx, a broken stream: list again later
                delay = watch_backoff(failures)
                failures += 1
                log.warning("watch of %s in %s failed (%s); listing again in %ss", kind.plural,
                            namespace or "all namespaces", err, delay)
                await asyncio.sleep(delay)

    def _params(self, **params: str) -> dict[str, str]:
        return {"labelSelector": self.selector, **params} if self.selector else params

    async def _list(self, kind: Kind, namespace: str | None) -> str:
        seen: dict[K, dict[str, Any]] = {}
        params = self._params(limit="500")
        while True:
            body = await self._get(kind, namespace, params)
            for obj in body.get("items") or []:
                obj.setdefault("kind", kind.kind)
                obj.setdefault("apiVersion", kind.api_version)
                key = self._key(kind, obj)
                if key is not None:
                    seen[key] = obj
            meta = body.get("metadata") or {}
            if not meta.get("continue"):
                break
            params = {**params, "continue": meta["continue"]}
        # Replace this stream's share of the cache: what is gone since the last listing is dropped.
        for key in self._held(kind, namespace):
            if key not in seen:
                self._drop(key)
        for key, obj in seen.items():
            self._keep(key, obj)
        self._listed.add((kind.plural, namespace))
        if len(self._listed) == len(self.streams):
            self.synced.set()
        return str(meta.get("resourceVersion") or "")

    async def _watch(self, kind: Kind, namespace: str | None, version: str) -> str | None:
        """Follow the stream from `version`; the version to resume from, or None to list again."""
        params = self._params(watch="true", allowWatchBookmarks="true", timeoutSeconds=str(WATCH_TIMEOUT))
        if version:
            params["resourceVersion"] = version
        try:
            return await self._follow(kind, namespace, version, params)
        except TimeoutError:  # nothing changed for longer than the server's own timeout: resume
            return version

    async def _follow(self, kind: Kind, namespace: str | None, version: str,
                      params: Mapping[str, str]) -> str | None:
        assert self._session is not None
        async with self._session.get(self._url(kind, namespace), params=params,
                                     headers=self._headers()) as response:
            if response.status == 410:
                return None
            if response.status >= 300:
                raise RuntimeError(f"{response.status}: {(await response.text())[:200]}")
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind_of_event, obj = event.get("type"), event.get("object") or {}
                if kind_of_event == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind_of_event == "BOOKMARK":
                    continue
                obj.setdefault("kind", kind.kind)
                obj.setdefault("apiVersion", kind.api_version)
                key = self._key(kind, obj)
                if key is None:
                    continue
                if kind_of_event == "DELETED":
                    self._drop(key)
                else:
                    self._keep(key, obj)
        return version

    # -- HTTP ------------------------------------------------------------------------------
    async def _get(self, kind: Kind, namespace: str | None, params: Mapping[str, str]) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.get(self._url(kind, namespace), params=params,
                                     headers=self._headers()) as response:
            if response.status == 404:
                raise NotServed(f"list {kind.plural}: 404: {(await response.text())[:200]}")
            if response.status >= 300:
                raise RuntimeError(f"list {kind.plural}: {response.status}: {(await response.text())[:200]}")
            return dict(await response.json(content_type=None))

    def _url(self, kind: Kind, namespace: str | None) -> str:
        host = self.configuration.host.rstrip("/")
        if namespace is not None:
            return host + kind.path(namespace)
        base = "/api/v1" if kind.api_version == "v1" else f"/apis/{kind.api_version}"
        return f"{host}{base}/{kind.plural}"

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.configuration.get_api_key_with_prefix("BearerToken") or \
            self.configuration.get_api_key_with_prefix("authorization")
        if token:
            headers["Authorization"] = token if token.lower().startswith("bearer ") else f"Bearer {token}"
        return headers

    def _ssl(self) -> ssl.SSLContext | bool:
        c = self.configuration
        if not c.host.startswith("https"):
            return False
        context = ssl.create_default_context(
            cafile=c.ssl_ca_cert) if c.ssl_ca_cert else ssl.create_default_context()
        if c.cert_file:
            context.load_cert_chain(c.cert_file, c.key_file)
        if not c.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
