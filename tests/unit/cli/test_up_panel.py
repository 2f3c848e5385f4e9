"""`aistack up`'s panel: the engine-load row, and when the panel is printed again."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from aistack.cli import up
from aistack.cli.progress import Stages
from aistack.runtime.gateway.engine_metrics import EngineLoad
from aistack.runtime.local.runner import Status


def load(running: int = 2, *, hits: float = 41, queries: float = 100) -> EngineLoad:
    return EngineLoad(running=running, waiting=0, kv_cache_usage=0.034, prefix_cache_queries=queries,
                      prefix_cache_hits=hits, scraped_at=0.0)


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    text = io.StringIO()
    monkeypatch.setattr(up, "out", Console(file=text, force_terminal=True, width=200, color_system=None))
    return text


def test_the_engine_load_row_reads_as_one_line() -> None:
    assert up.engine_load_text(load()) == "2 running · 0 waiting · KV cache 3% · prefix hits 41%"
    assert up.engine_load_text(load(hits=0, queries=0)).endswith("prefix hits none yet")


def test_the_row_is_there_only_with_a_load(screen: io.StringIO) -> None:
    up._show(Status(gateway_url="http://127.0.0.1:8080", model="m", engine="vLLM 0.32.0"))
    assert "engine load" not in screen.getvalue()
    up._show(Status(gateway_url="http://127.0.0.1:8080", model="m", engine="vLLM 0.32.0", engine_load=load()))
    assert "engine load  2 running · 0 waiting · KV cache 3% · prefix hits 41%" in screen.getvalue()


def test_new_numbers_alone_do_not_print_the_panel_again_but_the_row_coming_or_going_does(
        screen: io.StringIO) -> None:
    panel = up.StatusPanel(Stages(Console(file=io.StringIO())))
    status = Status(gateway_url="http://127.0.0.1:8080", model="m", engine_load=load())
    panel.show(status)
    status.engine_load = load(running=5)
    panel.show(status)
    assert screen.getvalue().count("aistack up") == 1
    status.engine_load = None
    panel.show(status)
    assert screen.getvalue().count("aistack up") == 2
