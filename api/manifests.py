"""Read AIStack manifests from YAML: every document checked, every error reported.

The CLI, `aistack up` and the tests all go through `load_documents`, so a manifest that
`aistack validate` accepts is exactly one that the operator and the runtime accept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from aistack.api.errors import FieldError, field_errors
from aistack.api.v1alpha1 import API_VERSION, KIND, AIStack


class ManifestError(ValueError):
    """A manifest that cannot be used; `errors` holds one FieldError per broken field."""

    def __init__(self, source: str, errors: list[FieldError]) -> None:
        self.source = source
        self.errors = errors
        super().__init__("\n".join(f"{source}: {e}" for e in errors))


@dataclass
class Document:
    """One YAML document of a file: the parsed stack, or why it is not one."""

    source: str
    index: int
    stack: AIStack | None = None
    errors: list[FieldError] = field(default_factory=list)
    skipped: str | None = None

    @property
    def where(self) -> str:
        return f"{self.source}[{self.index}]"


def parse_stack(data: Any, *, source: str = "<input>") -> AIStack:
    """Validate one manifest mapping; raise ManifestError naming each broken field."""
    if not isinstance(data, dict):
        raise ManifestError(source, [FieldError("<document>", f"expected a mapping, got {type(data).__name__}")])
    try:
        return AIStack.model_validate(data)
    except ValidationError as err:
        raise ManifestError(source, field_errors(err, root=AIStack)) from None


def load_documents(path: Path | str, *, text: str | None = None) -> list[Document]:
    """Every document of a (multi-document) YAML file; non-AIStack kinds are skipped, not errors."""
    source = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            return [Document(source, 0, errors=[FieldError("<file>", f"cannot read: {err}")])]
    try:
        raw_docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        problem = getattr(err, "problem", None) or str(err)
        return [Document(source, 0, errors=[FieldError(where, f"invalid YAML: {problem}")])]
    docs: list[Document] = []
    for index, data in enumerate(raw_docs):
        doc = Document(source, index)
        if data is None:
            continue
        if isinstance(data, dict) and (data.get("kind"), data.get("apiVersion")) != (KIND, API_VERSION):
            if data.get("kind") == KIND:
                doc.errors = [FieldError("apiVersion", f"{data.get('apiVersion')!r} is not served; use {API_VERSION!r}")]
            else:
                doc.skipped = f"{data.get('apiVersion')}/{data.get('kind')}"
            docs.append(doc)
            continue
        try:
            doc.stack = parse_stack(data, source=source)
        except ManifestError as err:
            doc.errors = err.errors
        docs.append(doc)
    return docs


def load_stack(path: Path | str) -> AIStack:
    """The single AIStack of a file (what `aistack up` and `render` take)."""
    docs = load_documents(path)
    errors = [e for d in docs for e in d.errors]
    if errors:
        raise ManifestError(str(path), errors)
    stacks = [d.stack for d in docs if d.stack is not None]
    if len(stacks) != 1:
        raise ManifestError(str(path), [FieldError("<file>", f"expected exactly one AIStack, found {len(stacks)}")])
    return stacks[0]
