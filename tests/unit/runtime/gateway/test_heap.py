"""The gateway freezes its heap once it is built (start-up) and again after a config reload, so
the garbage collector's full passes never walk the long-lived state on the request path.

Whether an object is frozen is read from `gc.get_objects()`, which lists every object the
collector still walks and none that `gc.freeze()` set aside.
"""

from __future__ import annotations

import asyncio
import gc

import pytest
import yaml

from aistack.runtime.gateway import create_app
from aistack.testing.gateway import base_config


def walked(obj: object) -> bool:
    """True when the collector's passes still walk `obj` (it is not frozen)."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture(autouse=True)
def _unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)


def test_state_is_frozen_after_startup_and_again_after_a_reload(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(base_config("http://127.0.0.1:9/v1")))
    app = create_app(config_path=path, reload_interval_s=3600)
    first = app.state.holder.current
    assert walked(first)  # built, not yet serving

    async def serve_and_reload() -> object:
        async with app.router.lifespan_context(app):
            assert not walked(first), "the state built at start-up is walked by every full collection"
            assert gc.get_threshold()[0] >= 10_000
            path.write_text(yaml.safe_dump(base_config("http://127.0.0.1:9/v1", stage="staging")))
            assert await app.state.watcher.check_now()
            second = app.state.holder.current
            assert second is not first and second.config.stage == "staging"
            assert not walked(second), "the reloaded state is walked by every full collection"
            return second

    asyncio.run(serve_and_reload())
