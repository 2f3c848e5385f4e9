"""images/slim.py, which trims the image venvs, on a small site-packages of its own: test suites
and `--drop` paths go, extension modules lose their symbols but still load, auditwheel's
vendored libraries stay byte-identical, and only the import closure gets bytecode.
Runs everywhere (no container engine needed); `strip` comes with binutils."""

from __future__ import annotations

import importlib.util
import runpy
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SLIM = REPO / "images" / "slim.py"
EXTENSION = Path(importlib.util.find_spec("_json").origin)  # a stdlib extension module with symbols


def slim(*args: str) -> None:
    argv, sys.argv = sys.argv, [str(SLIM), *args]
    try:
        runpy.run_path(str(SLIM), run_name="__main__")
    finally:
        sys.argv = argv


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site-packages"
    (site / "pkg" / "tests").mkdir(parents=True)
    (site / "pkg" / "tests" / "test_pkg.py").write_text("def test(): pass\n")
    (site / "pkg" / "__init__.py").write_text("from pkg import used\n")
    (site / "pkg" / "used.py").write_text("VALUE = 1\n")
    (site / "pkg" / "unused.py").write_text("VALUE = 2\n")
    (site / "pkg" / "aio").mkdir()
    (site / "pkg" / "aio" / "__init__.py").write_text("")
    (site / "pkg.libs").mkdir()
    shutil.copy(EXTENSION, site / "pkg" / EXTENSION.name)
    shutil.copy(EXTENSION, site / "pkg.libs" / "libvendored.so.1")
    return site


def test_tests_and_dropped_paths_go(site: Path) -> None:
    slim(str(site), "--drop", "pkg/aio")
    assert not (site / "pkg" / "tests").exists()
    assert not (site / "pkg" / "aio").exists()
    assert (site / "pkg" / "used.py").exists()


def test_a_drop_path_that_does_not_exist_stops_the_build(site: Path) -> None:
    with pytest.raises(SystemExit, match="no such path"):
        slim(str(site), "--drop", "pkg/renamed")


@pytest.mark.skipif(shutil.which("strip") is None, reason="binutils' strip is not installed")
def test_extension_modules_are_stripped_and_still_load_vendored_libraries_are_untouched(site: Path) -> None:
    module, vendored = site / "pkg" / EXTENSION.name, site / "pkg.libs" / "libvendored.so.1"
    slim(str(site))
    assert module.stat().st_size < EXTENSION.stat().st_size
    assert vendored.read_bytes() == EXTENSION.read_bytes()
    spec = importlib.util.spec_from_file_location("_json", module)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    assert loaded.encode_basestring_ascii("é") == '"\\u00e9"'


def test_bytecode_only_for_the_import_closure(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # as in the image's ENV: slim.py must override it
    slim(str(site), "--import", "pkg")
    compiled = {p.name.split(".")[0] for p in (site / "pkg" / "__pycache__").glob("*.pyc")}
    assert compiled == {"__init__", "used"}
