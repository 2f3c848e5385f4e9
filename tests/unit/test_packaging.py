"""The repo's folders map into the `aistack` namespace without shadowing the standard library."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TOP = {"api", "cli", "operator", "platform", "runtime"}


def package_folders() -> set[str]:
    found = set()
    for top in TOP:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.parent.relative_to(ROOT)
            if "__pycache__" not in rel.parts:
                found.add("aistack." + ".".join(rel.parts))
    return found


def test_every_package_folder_is_listed() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert package_folders() - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - package_folders() == set(), "these listed packages have no folder"


def test_top_folders_map_into_the_namespace_and_have_no_init() -> None:
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    assert mapping == {f"aistack.{t}": t for t in sorted(TOP)}
    assert not [t for t in TOP if (ROOT / t / "__init__.py").exists()]
    assert not (ROOT / "conftest.py").exists() and not (ROOT / "tests" / "__init__.py").exists()


def test_stdlib_operator_and_platform_win_from_the_repo_root() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import operator, platform; print(operator.__file__); print(platform.__file__)"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert len(out) == 2
    for path in out:
        assert not Path(path).resolve().is_relative_to(ROOT), path
    assert Path(out[0]).name == "operator.py" and Path(out[1]).name == "platform.py"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (path,) = out.glob("aistack-*.whl")
    return path


def test_wheel_contains_only_aistack_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    stray = [n for n in names if not n.startswith(("aistack/", "aistack-"))]
    assert not stray, stray
    assert "aistack/api/v1alpha1/stack.py" in names
    assert not [n for n in names if n.startswith("aistack/") and n.endswith("/__init__.py") and n.count("/") == 2]


def test_installed_wheel_imports_every_layer_outside_the_repo(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True,
    )
    code = (
        "import aistack.api, aistack.operator, aistack.platform, aistack.runtime, aistack.cli;"
        "import aistack.api.v1alpha1 as v, aistack.api.crd as c;"
        "print(v.AIStack.__module__, aistack.api.__path__[0])"
    )
    # From outside the repo, with the unpacked wheel first on the path: the installed
    # copy is what gets imported, not the source tree.
    result = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stdout
