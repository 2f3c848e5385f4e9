"""Slow loads (a model, an embedder) in threads that a Ctrl-C during `aistack up`'s start may abandon.

`asyncio.to_thread` runs on the loop's executor, whose threads the interpreter joins at exit:
a Ctrl-C that cancelled the load would still wait for it to finish (up to half a minute for
the offline model). A daemon thread is not waited for; `loads_in_flight` tells the CLI that
one is still running, so it can leave without the interpreter's shutdown running under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

LOAD_THREAD_PREFIX = "aistack-up-load-"


async def in_daemon_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`asyncio.to_thread` in a daemon thread: cancelling the await abandons the load."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result, error = fn(*args, **kwargs), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    thread = threading.Thread(target=work, name=f"{LOAD_THREAD_PREFIX}{getattr(fn, '__name__', 'load')}",
                              daemon=True)
    thread.start()
    return await future


def loads_in_flight() -> bool:
    """Whether a load that `in_daemon_thread` started still runs (Ctrl-C abandoned it)."""
    return any(t.name.startswith(LOAD_THREAD_PREFIX) and t.is_alive() for t in threading.enumerate())
