"""The documents stay true to the tree: links resolve inside the repository, and every path,
module and function that docs/architecture.md names exists, and the import direction it
describes holds.

A link that leaves the repository (`../shared/...`) works on one machine and is broken in every
clone; a renamed module leaves the architecture document describing code that is gone. Both
fail here, naming the file and what it points at.
"""

from __future__ import annotations

import ast
import re
import subprocess
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
CODE_PACKAGES = ("api", "cli", "operator", "platform", "runtime", "testing")
# What each code folder may import from the `aistack` namespace besides itself.
ALLOWED_IMPORTS = {
    "api": set(),
    "operator": {"api"},
    "runtime": {"api"},
    "platform": {"api"},
    "stacks": {"api", "platform"},
    "cli": {"api", "operator", "runtime", "platform"},
    # The test harness (its own distribution): it drives every part; no product folder imports it.
    "testing": {"api", "operator", "runtime", "platform"},
}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[^\S\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"  # [text], one level of nested brackets
                         # (target "title")
                         r"\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>\n]*>|\S+)", re.MULTILINE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
PATHLIKE = re.compile(r"^[\w.\-]+(?:/[\w.\-]*)+$")
DOTTED = re.compile(
    r"^aistack\.(?:api|cli|operator|platform|runtime|testing)(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_]\w*)?$")
CALL = re.compile(r"^(?:([A-Za-z_]\w*)\.)?([A-Za-z_]\w*)\(\)$")
CAPITALISED = re.compile(r"^[A-Z]\w*(?:\.[A-Za-z_]\w*)?$")
PYTHON_M = re.compile(r"^python -m (aistack\.[\w.]+)")
COMMAND = re.compile(r"^aistack ([a-z][\w-]*)")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


@cache
def source_files(pattern: str = "*") -> tuple[str, ...]:
    """The files a clone would have: tracked, or new and not ignored (a change not yet committed)."""
    listed = git("ls-files", "--cached", "--others", "--exclude-standard", pattern).split()
    return tuple(sorted({f for f in listed if (ROOT / f).is_file()}))


@cache
def syntax_tree(file: str) -> ast.Module:
    return ast.parse((ROOT / file).read_text(encoding="utf-8"), filename=file)


def markdown_files() -> list[str]:
    """README.md, docs/*.md and every other tracked Markdown file (new docs/ files too)."""
    return sorted({*source_files("*.md"), "README.md"})


def without_code(text: str) -> str:
    """The text with fenced blocks and code spans blanked: a `[x](y)` shown as code is no link."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return CODE_SPAN.sub(lambda m: " " * len(m.group(0)), text)


def relative_links(text: str) -> list[str]:
    """The link targets of a Markdown text that point at files: no URL, mail or pure anchor."""
    prose = without_code(text)
    targets = [m.group(1) for m in INLINE_LINK.finditer(prose)]
    targets += [m.group(1) for m in REFERENCE_DEFINITION.finditer(prose)]
    targets = [t[1:-1] if t.startswith("<") and t.endswith(">") else t for t in targets]
    return [t for t in targets if t and not t.startswith("#") and not SCHEME.match(t)]


@cache
def ignored(relative: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", relative], cwd=ROOT).returncode == 0


def path_problem(target: Path, *, root: Path = ROOT) -> str | None:
    """Why `target` is no file or folder of a clone of the repository, or None."""
    resolved, root = target.resolve(), root.resolve()
    if not resolved.is_relative_to(root):
        return "leaves the repository (broken in every clone)"
    if not resolved.exists():
        return "does not exist"
    relative = resolved.relative_to(root).as_posix()
    if root == ROOT and relative != "." and ignored(relative):
        return "is ignored by git (not in a clone)"
    return None


def link_problem(document: Path, target: str, *, root: Path = ROOT) -> str | None:
    path = unquote(target.split("#", 1)[0].split("?", 1)[0])
    if not path:
        return None
    base = root if path.startswith("/") else document.parent
    return path_problem(base / path.lstrip("/"), root=root)


def test_link_extraction_skips_code_urls_and_anchors() -> None:
    text = (
        "See [the design](../shared/ARCHITECTURE.md) and ![a figure](<docs/a b.png> \"title\").\n"
        "[web](https://example.com) [mail](mailto:x@example.com) [here](#section) [ref][r]\n"
        "`[not a link](nowhere.md)`\n"
        "```\n[neither](gone.md)\n```\n"
        "[r]: images/README.md#build\n"
    )
    assert relative_links(text) == ["../shared/ARCHITECTURE.md", "docs/a b.png", "images/README.md#build"]


def test_a_link_out_of_the_repository_or_to_nothing_is_named(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "there.md").write_text("x", encoding="utf-8")
    readme = tmp_path / "README.md"
    assert link_problem(readme, "../shared/ARCHITECTURE.md", root=tmp_path) == \
        "leaves the repository (broken in every clone)"
    assert link_problem(readme, "docs/missing.md", root=tmp_path) == "does not exist"
    assert link_problem(readme, "docs/there.md#a-heading", root=tmp_path) is None
    assert link_problem(tmp_path / "docs" / "there.md", "/docs/", root=tmp_path) is None
    assert link_problem(tmp_path / "docs" / "there.md", "../docs/there.md", root=tmp_path) is None


@pytest.mark.parametrize("document", markdown_files())
def test_relative_links_point_inside_the_repository(document: str) -> None:
    path = ROOT / document
    broken = [f"{document}: ({target}) {problem}"
              for target in relative_links(path.read_text(encoding="utf-8"))
              if (problem := link_problem(path, target)) is not None]
    assert not broken, "broken links:\n" + "\n".join(broken)


# -- docs/architecture.md names only what exists ---------------------------------------------


def code_spans(text: str) -> list[str]:
    prose = FENCE.sub("", text)
    return [m.group(2).strip() for m in CODE_SPAN.finditer(prose)]


@cache
def top_folders() -> frozenset[str]:
    return frozenset(p.split("/", 1)[0] for p in source_files() if "/" in p)


def repo_paths(spans: list[str]) -> list[str]:
    """Spans written as a path of the repository (`operator/machinery/peering.py`, `deploy/operator/`);
    templates such as `Pulumi.<stage>.yaml` or `stages/*/` are no path and are left out."""
    return [s for s in spans if PATHLIKE.match(s) and s.split("/", 1)[0] in top_folders()]


def module_source(parts: list[str]) -> tuple[Path, list[str]] | None:
    """The file or folder that `aistack.<parts>` names (package-dir mapping: aistack.api -> api/),
    and the attribute names left after the module; None when no such module exists."""
    if not parts or parts[0] not in CODE_PACKAGES:
        return None
    where = ROOT / parts[0]
    for i, part in enumerate(parts[1:], start=1):
        if (where / part).is_dir():
            where = where / part
        elif (where / f"{part}.py").is_file():
            return where / f"{part}.py", parts[i + 1:]
        else:
            return (where, parts[i:]) if (where / "__init__.py").is_file() else None
    return where, []


def defined_names(body: list[ast.stmt]) -> dict[str, ast.AST]:
    names: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update({(a.asname or a.name).split(".")[0]: node for a in node.names})
    return names


def dotted_problem(span: str) -> str | None:
    """Why `aistack.x.y[.Name[.attr]]` (or `aistack.x.y:name`) names nothing in the tree."""
    parts = span.replace(":", ".").split(".")[1:]
    found = module_source(parts)
    if found is None:
        return "no such module"
    source, attributes = found
    if not attributes:
        return None
    if source.is_dir():
        source = source / "__init__.py"
    names = defined_names(ast.parse(source.read_text(encoding="utf-8")).body)
    node = names.get(attributes[0])
    if node is None:
        return f"{source.relative_to(ROOT)} defines no {attributes[0]}"
    if len(attributes) > 1 and isinstance(
            node, ast.ClassDef) and attributes[1] not in defined_names(node.body):
        return f"class {attributes[0]} has no {attributes[1]}"
    return None


@cache
def python_definitions() -> frozenset[str]:
    """Every function, class and module-level name defined in the Python code (`name`), and
    every member of a class (`Class.member`)."""
    found: set[str] = set()
    for file in source_files("*.py"):
        tree = syntax_tree(file)
        found |= {n for n, node in defined_names(tree.body).items()
                  if not isinstance(node, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.add(node.name)
            if isinstance(node, ast.ClassDef):
                found |= {f"{node.name}.{n}" for n in defined_names(node.body)}
    return frozenset(found)


@cache
def python_words() -> frozenset[str]:
    """Identifier-like string constants of the Python code: the Kubernetes kinds, condition
    types, reasons and phases it writes (`ClusterKopfPeering`, `CollectionMismatch`, ...)."""
    return frozenset(node.value for file in source_files("*.py")
                     for node in ast.walk(syntax_tree(file))
                     if isinstance(node, ast.Constant) and isinstance(node.value, str)
                     and re.fullmatch(r"[A-Za-z_]\w*", node.value))


def cli_commands() -> set[str]:
    """The command names registered on the typer app (`app.command("up")`), and its groups
    (`app.add_typer(engine_app, name="engine")`)."""
    tree = ast.parse((ROOT / "cli" / "main.py").read_text(encoding="utf-8"))
    calls = [node for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)]
    commands = {node.args[0].value for node in calls
                if node.func.attr == "command" and node.args and isinstance(node.args[0], ast.Constant)}
    groups = {keyword.value.value for node in calls if node.func.attr == "add_typer"
              for keyword in node.keywords
              if keyword.arg == "name" and isinstance(keyword.value, ast.Constant)}
    return commands | groups


def architecture_spans() -> list[str]:
    assert ARCHITECTURE.is_file(), (
        "docs/architecture.md is missing: it is the project's architecture document")
    return code_spans(ARCHITECTURE.read_text(encoding="utf-8"))


def test_paths_named_in_the_architecture_exist() -> None:
    paths = repo_paths(architecture_spans())
    assert len(paths) >= 40, (
        f"only {len(paths)} repository paths found in docs/architecture.md: is the pattern broken?")
    missing = [f"docs/architecture.md: `{p}` {problem}" for p in paths
               if (problem := path_problem(ROOT / p.rstrip("/"))) is not None]
    assert not missing, "paths that are not in the tree:\n" + "\n".join(missing)


def test_modules_and_functions_named_in_the_architecture_exist() -> None:
    spans = architecture_spans()
    dotted = [s for s in spans if DOTTED.match(s)]
    calls = [s for s in spans if CALL.match(s)]
    assert dotted and len(calls) >= 20, "no module or function references found in docs/architecture.md"
    assert len(
        [s for s in spans if CAPITALISED.match(
            s)]) >= 20, "no class or kind names found in docs/architecture.md"
    wrong = [f"`{s}`: {problem}" for s in dotted if (problem := dotted_problem(s)) is not None]
    wrong += [f"`{s}`: defined nowhere in the Python code" for s in calls
              if s[:-2] not in python_definitions()]
    modules = [m.group(1) for s in spans if (m := PYTHON_M.match(s))]
    wrong += [f"`python -m {m}`: {problem}" for m in modules if (problem := dotted_problem(m)) is not None]
    commands = [m.group(1) for s in spans if (m := COMMAND.match(s))]
    wrong += [f"`aistack {c}`: no such command in cli/main.py" for c in commands if c not in cli_commands()]
    names = [s for s in spans if CAPITALISED.match(s)]
    wrong += [f"`{s}`: neither defined nor written in the Python code" for s in names
              if s not in python_definitions() and s not in python_words()]
    assert not wrong, "docs/architecture.md names what does not exist:\n" + "\n".join(wrong)


def test_the_architecture_covers_every_code_folder() -> None:
    paths = {p.split("/", 1)[0] for p in repo_paths(architecture_spans())}
    expected = {*CODE_PACKAGES, "stacks", "deploy", "images", "tests", "bench"}
    assert expected <= paths, f"docs/architecture.md names nothing under {sorted(expected - paths)}"


def test_a_renamed_module_is_reported() -> None:
    assert dotted_problem("aistack.operator.machinery.peering.PeeringWatch") is None
    assert dotted_problem("aistack.runtime.__main__:app_from_env") is None
    assert dotted_problem("aistack.api.v1alpha1.AIStack") is None
    assert dotted_problem("aistack.operator.collections") == "no such module"
    assert dotted_problem("aistack.operator.machinery.peering.NoSuchThing") == \
        "operator/machinery/peering.py defines no NoSuchThing"
    assert path_problem(ROOT / "operator" / "no_such_module.py") == "does not exist"


# -- the import direction the document describes ----------------------------------------------


def layering_violations(sources: dict[str, ast.Module]) -> list[str]:
    """`file:line: imports aistack.x` for each import of a package its folder may not import,
    lazy imports inside functions included; relative imports are violations too."""
    wrong = []
    for file, tree in sources.items():
        folder = file.split("/", 1)[0]
        if folder not in ALLOWED_IMPORTS:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                wrong.append(f"{file}:{node.lineno}: relative import (imports are absolute, `aistack.…`)")
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            for parts in (name.split(".") for name in names):
                if parts[0] == "aistack" and len(parts) > 1 and parts[1] != folder \
                        and parts[1] not in ALLOWED_IMPORTS[folder]:
                    wrong.append(f"{file}:{node.lineno}: imports aistack.{parts[1]}")
    return wrong


def test_a_layering_violation_is_named() -> None:
    sources = {
        "operator/x.py": ast.parse("def f():\n    from aistack.runtime.gateway import create_app\n"),
        "runtime/y.py": ast.parse("import aistack.operator.kube\nfrom . import z\n"),
        "api/z.py": ast.parse("from aistack.cli.main import app\n"),
        "cli/ok.py": ast.parse(
            "import aistack.operator.run, aistack.runtime.tracing, aistack.platform.config\n"),
        "tests/ok.py": ast.parse("import aistack.operator.run\n"),
        "operator/w.py": ast.parse("from aistack.testing.emulator import Emulator\n"),
        "testing/ok.py": ast.parse("import aistack.operator.run, aistack.runtime.gateway\n"),
    }
    assert layering_violations(sources) == [
        "operator/x.py:2: imports aistack.runtime",
        "runtime/y.py:1: imports aistack.operator",
        "runtime/y.py:2: relative import (imports are absolute, `aistack.…`)",
        "api/z.py:1: imports aistack.cli",
        "operator/w.py:1: imports aistack.testing",
    ]


def test_imports_point_down_to_api() -> None:
    """api/ imports no other package; operator/, runtime/ and platform/ only api/ (operator/ and
    runtime/ never each other); stacks/ the platform; cli/ anything."""
    wrong = layering_violations({file: syntax_tree(file) for file in source_files("*.py")})
    assert not wrong, "imports against the layering of docs/architecture.md:\n" + "\n".join(wrong)
