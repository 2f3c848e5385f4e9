"""Fixtures for the gateway tests: one fake upstream per session."""

from __future__ import annotations

import os

import pytest

from aistack.testing.openai_server import run_openai_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def upstream():
    with run_openai_server(hang_seconds=5.0) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_upstream(upstream):
    upstream.configure(fail_next=[], latency_s=0.0, chunk_delay_s=0.0)
    yield
