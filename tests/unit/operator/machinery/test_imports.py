"""The machinery stays plumbing: read from the modules' own imports (lazy ones included).

The queue knows nothing of aistack; the rest may use the API contracts, the REST client and each
other, never what a reconcile does (reconcile, apply, render, status, collection) nor how the
operator is wired (options, handlers, runner, the operator's caches in watch.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

MACHINERY = Path(__file__).resolve().parents[4] / "operator" / "machinery"
ALLOWED = ("aistack.api", "aistack.operator.kube", "aistack.operator.machinery")


def aistack_imports(source: str) -> set[str]:
    """Every aistack module (or module.name) that `source` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import"
            found |= {node.module or ""} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == "aistack"}


def forbidden(names: set[str]) -> set[str]:
    return {name for name in names if not any(within(name, allowed) for allowed in ALLOWED)}


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_queue_imports_nothing_of_aistack() -> None:
    assert aistack_imports((MACHINERY / "queue.py").read_text()) == set()


def test_the_machinery_imports_no_reconcile_apply_options_or_wiring() -> None:
    modules = sorted(MACHINERY.glob("*.py"))
    assert {m.name for m in modules} >= {"queue.py", "listwatch.py", "peering.py", "leader.py"}
    wrong = {f"{module.name}: {name}" for module in modules
             for name in forbidden(aistack_imports(module.read_text()))}
    assert not wrong, "the machinery reaches into the operator:\n" + "\n".join(sorted(wrong))


def test_the_check_sees_a_forbidden_import() -> None:
    """The reading above catches each import the rule names, lazy ones too."""
    source = ("from aistack.operator.reconcile import reconcile\nimport aistack.operator.apply\n"
              "def f():\n    from aistack.operator import options\n"
              "from aistack.operator.kube import Kube\nfrom aistack.api.conventions import LEASE_NAME\n")
    assert forbidden(aistack_imports(source)) == {
        "aistack.operator.reconcile", "aistack.operator.reconcile.reconcile", "aistack.operator.apply",
        "aistack.operator", "aistack.operator.options"}
