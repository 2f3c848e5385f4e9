"""Inside runtime/ imports point down: a package imports only packages of a lower layer in
`LAYERS`, lazy imports inside functions included. This keeps out arrows like the one tracing
once had into the gateway (for its metrics), which made the two one tangle."""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[3] / "runtime"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__", "local"),  # entry points: the gateway pod, `aistack up`
    ("gateway", "evaluation", "ingestion"),  # the HTTP API, and the work the CLI runs
    ("orchestration", "guardrails", "tracing"),  # the steps of a request (and the rails' sidecar)
    ("retrieval", "engine"),  # the store, the embedders and the contracts (`Passage`, `Embedder`,
    # `Retriever`); the vLLM engine's environment, which only `local` starts
    ("core",),  # the gateway config file and the metrics: what every part shares
)
RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}


def unit_of(relative: str) -> str:
    """The package (or top-level module) of a path under runtime/: `gateway/app.py` -> `gateway`."""
    first = relative.split("/", 1)[0]
    return first.removesuffix(".py")


def imported_units(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, unit) for every import of `aistack.runtime.<unit>...` in `tree`, wherever it sits."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            if node.module == "aistack.runtime":  # `from aistack.runtime import gateway`
                modules = [f"aistack.runtime.{alias.name}" for alias in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[:2] == ["aistack", "runtime"] and len(parts) > 2:
                found.append((node.lineno, parts[2]))
    return found


def upward_imports(sources: dict[str, ast.Module]) -> list[str]:
    """`file:line: <unit> imports <unit>` for each import that is not of a lower layer."""
    wrong = []
    for file, tree in sorted(sources.items()):
        unit = unit_of(file)
        for line, target in imported_units(tree):
            if target == unit:
                continue
            if target not in RANK or unit not in RANK:
                wrong.append(
                    f"runtime/{file}:{line}: {unit} imports {target}, and LAYERS places only one of them")
            elif RANK[target] <= RANK[unit]:
                wrong.append(f"runtime/{file}:{line}: {unit} imports {target}, which is not in a lower layer")
    return wrong


def runtime_sources() -> dict[str, ast.Module]:
    return {path.relative_to(RUNTIME).as_posix(): ast.parse(path.read_text(), filename=str(path))
            for path in sorted(RUNTIME.rglob("*.py"))}


def test_every_runtime_package_has_a_layer() -> None:
    units = {unit_of(file) for file in runtime_sources()}
    assert units - RANK.keys() == set(), "place these runtime packages in LAYERS"
    assert RANK.keys() - units == set(), "LAYERS names runtime packages that no longer exist"


def test_runtime_imports_point_down() -> None:
    wrong = upward_imports(runtime_sources())
    assert not wrong, "imports against the order of LAYERS:\n" + "\n".join(wrong)


def test_an_upward_import_is_named() -> None:
    sources = {
        "tracing/tracer.py": ast.parse("from aistack.runtime.gateway.metrics import GatewayMetrics\n"),
        "guardrails/sidecar.py": ast.parse("def main():\n    from aistack.runtime import gateway\n"),
        "retrieval/store.py": ast.parse("import aistack.runtime.orchestration.pipeline\n"),
        "gateway/app.py": ast.parse("from aistack.runtime.gateway.chat import handle_chat\n"
                                    "from aistack.runtime.retrieval.contracts import Retriever\n"),
        "core/x.py": ast.parse("import aistack.runtime.nowhere\n"),
    }
    assert upward_imports(sources) == [
        "runtime/core/x.py:1: core imports nowhere, and LAYERS places only one of them",
        "runtime/guardrails/sidecar.py:2: guardrails imports gateway, which is not in a lower layer",
        "runtime/retrieval/store.py:1: retrieval imports orchestration, which is not in a lower layer",
        "runtime/tracing/tracer.py:1: tracing imports gateway, which is not in a lower layer",
    ]
