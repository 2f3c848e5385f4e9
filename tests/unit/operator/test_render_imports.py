"""Who may import what around render, read from the modules' own import statements (ast), so
that a layer reaching into another layer, or the operator into a layer, cannot creep back.

- each layer module under operator/render/ imports, of the operator, only `render.common` and
  `render.endpoints`; `endpoints` only `common`; `common` nothing of the operator;
- outside operator/render/, the product imports render only as the package
  (`aistack.operator.render`: `render()`, `Rendered`), never one of its modules;
- `Check` lives in operator/check.py: status and collection do not import each other, and the
  collection check needs nothing of render.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
RENDER = ROOT / "operator" / "render"
PRODUCT = ("api", "cli", "operator", "platform", "runtime")
SHARED = {"common", "endpoints"}


def module_name(path: Path) -> str:
    """`operator/render/gateway.py` -> `aistack.operator.render.gateway`."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("aistack", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def is_module(name: str) -> bool:
    """Whether an `aistack.` name is a module or package of this tree."""
    relative = Path(*name.split(".")[1:])
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """Every `aistack.` module `path` imports, at any depth (also inside functions); `from
    package import module` counts as importing the module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if node.module.startswith("aistack.") and is_module(sub) else node.module)
    return {name for name in found if name.startswith("aistack.")}


def operator_imports(path: Path) -> set[str]:
    return {name for name in imports(path) if name.startswith("aistack.operator.")}


def layer_modules() -> list[Path]:
    return sorted(p for p in RENDER.glob("*.py") if p.stem not in SHARED | {"__init__"})


def test_the_rules_see_every_layer_module() -> None:
    assert {p.stem for p in layer_modules()} >= {"model", "retrieval", "guardrails", "gateway", "tracking",
                                                 "jobs"}
    # the reader resolves `from package import module` (the form a reach across once took)
    assert imports(RENDER / "__init__.py") >= {"aistack.operator.render.gateway",
                                               "aistack.operator.render.jobs"}


def test_each_layer_module_depends_on_common_and_endpoints_only() -> None:
    allowed = {f"aistack.operator.render.{name}" for name in SHARED}
    reaches = {p.name: sorted(operator_imports(p) - allowed) for p in layer_modules()}
    assert {name: found for name, found in reaches.items() if found} == {}


def test_endpoints_and_common_sit_below_the_layers() -> None:
    assert operator_imports(RENDER / "endpoints.py") == {"aistack.operator.render.common"}
    assert operator_imports(RENDER / "common.py") == set()


def test_outside_render_only_the_package_is_imported() -> None:
    inside = {module_name(p) for p in RENDER.glob("*.py")} - {"aistack.operator.render"}
    reaches = {}
    for folder in PRODUCT:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if RENDER in path.parents:
                continue
            if found := sorted(imports(path) & inside):
                reaches[str(path.relative_to(ROOT))] = found
    assert reaches == {}


def test_check_has_a_module_of_its_own() -> None:
    operator = ROOT / "operator"
    assert "aistack.operator.status" not in imports(operator / "collection.py")
    assert "aistack.operator.collection" not in imports(operator / "status.py")
    assert not any(name.startswith("aistack.operator.render") for name in imports(operator / "collection.py"))
    assert operator_imports(operator / "check.py") == set()
    defined = [path.name for path in sorted(operator.rglob("*.py"))
               if any(isinstance(node, ast.ClassDef) and node.name == "Check"
                      for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))]
    assert defined == ["check.py"]
