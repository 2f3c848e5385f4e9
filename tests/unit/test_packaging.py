"""The repo's folders map into the `aistack` namespace without shadowing the standard library,
and the test harness (testing/, the `aistack-testing` distribution) stays out of the product."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
HARNESS = ROOT / "testing"
HARNESS_PYPROJECT = tomllib.loads((HARNESS / "pyproject.toml").read_text())
TOP = {"api", "cli", "operator", "platform", "runtime"}


def package_folders(*tops: str) -> set[str]:
    """`aistack.<dotted folder>` of every folder under `tops` that holds Python files."""
    found = set()
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *tops],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for file in tracked:
        path = Path(file)
        if path.suffix == ".py" and (ROOT / path).is_file():
            found.add("aistack." + ".".join(path.parent.parts))
    return found


def test_every_package_folder_is_listed() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert package_folders(*TOP) - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - package_folders(*TOP) == set(), "these listed packages have no folder"


def test_every_harness_folder_is_listed_in_its_own_distribution() -> None:
    listed = set(HARNESS_PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == package_folders("testing"), "testing/pyproject.toml must list testing/'s packages"
    assert HARNESS_PYPROJECT["tool"]["setuptools"]["package-dir"] == {"aistack.testing": "."}
    assert not [p for p in PYPROJECT["tool"]["setuptools"]["packages"] if p.startswith("aistack.testing")]


def test_top_folders_map_into_the_namespace_and_have_no_init() -> None:
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    assert mapping == {f"aistack.{t}": t for t in sorted(TOP)}
    assert not [t for t in (*TOP, "testing") if (ROOT / t / "__init__.py").exists()]
    assert not (ROOT / "conftest.py").exists() and not (ROOT / "tests" / "__init__.py").exists()


def test_stdlib_operator_and_platform_win_from_the_repo_root() -> None:
    out = subprocess.run(
        [sys.executable, "-c",
         "import operator, platform; print(operator.__file__); print(platform.__file__)"],
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


@pytest.fixture(scope="module")
def harness_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The harness built from a copy of testing/ alone: it needs nothing else of the checkout."""
    source = tmp_path_factory.mktemp("harness") / "testing"
    shutil.copytree(HARNESS, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    out = tmp_path_factory.mktemp("harness-dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(source)],
        check=True, capture_output=True, text=True,
    )
    (path,) = out.glob("aistack_testing-*.whl")
    return path


def test_wheel_contains_only_aistack_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    stray = [n for n in names if not n.startswith(("aistack/", "aistack-"))]
    assert not stray, stray
    assert "aistack/api/v1alpha1/stack.py" in names
    assert not [n for n in names if n.startswith("aistack/") and n.endswith("/__init__.py")
                and n.count("/") == 2]


def test_product_wheel_carries_no_test_harness(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("aistack/testing/") or "/testing/" in n], names
    harness_files = {"emulator.py", "openai_server.py", "pulumi_mocks.py"}
    assert not [n for n in names if n.rsplit("/", 1)[-1] in harness_files]


def test_harness_wheel_holds_the_harness_only(harness_wheel: Path) -> None:
    names = zipfile.ZipFile(harness_wheel).namelist()
    modules = {n for n in names if not n.startswith("aistack_testing-")}
    assert modules == {f"aistack/testing/{path.name}" for path in HARNESS.glob("*.py")}


def test_installed_wheel_imports_every_layer_outside_the_repo(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
         str(wheel)],
        check=True, capture_output=True, text=True,
    )
    code = (
        "import aistack.api, aistack.operator, aistack.platform, aistack.runtime, aistack.cli;"
        "import aistack.api.v1alpha1 as v, aistack.api.crd as c;"
        "print(v.AIStack.__module__, aistack.api.__path__[0])"
    )
    # From outside the repo, with the unpacked wheel first on the path: the installed
    # copy is what gets imported, not the source tree.
    result = subprocess.run([sys.executable, "-c",
                             f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stdout
    # The product alone (-S: without this venv's editable harness) has no harness.
    code = f"import sys; sys.path[:0] = [{str(target)!r}]; import aistack.api; import aistack.testing"
    absent = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=tmp_path, capture_output=True,
                            text=True)
    assert "No module named 'aistack.testing'" in absent.stderr


def test_installed_harness_shares_the_namespace_with_the_product(wheel: Path, harness_wheel: Path,
                                                                 tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
         str(wheel), str(harness_wheel)],
        check=True, capture_output=True, text=True,
    )
    code = (f"import sys; sys.path.insert(0, {str(target)!r});"
            "import aistack.api.conventions as c, aistack.testing.documents as d;"
            "import operator, platform; print(c.__file__); print(d.__file__); print(operator.__file__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    product, harness, stdlib = result.stdout.split()
    assert Path(product).is_relative_to(target) and Path(harness).is_relative_to(target)
    assert not Path(stdlib).is_relative_to(target)


@pytest.mark.parametrize("where", ["repo", "elsewhere"])
def test_the_dev_install_imports_product_and_harness_from_anywhere(where: str, tmp_path: Path) -> None:
    """tools/install.py installs both editable into the dev venv: each maps its own folder."""
    code = ("import aistack.api.conventions as c, aistack.testing.documents as d, operator, platform;"
            "print(c.__file__); print(d.__file__); print(operator.__file__); print(platform.__file__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT if where == "repo" else tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    product, harness, *stdlib = map(Path, result.stdout.split())
    assert product == ROOT / "api" / "conventions.py" and harness == HARNESS / "documents.py"
    assert not [p for p in stdlib if p.resolve().is_relative_to(ROOT)]
