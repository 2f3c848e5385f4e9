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
from aistack.api.v1alpha1.aliases import FIELD_ALIASES


class ManifestError(ValueError):
    """A manifest that cannot be used; `errors` holds one FieldError per broken field."""

    def __init__(self, source: str, errors: list[FieldError], *, lines: list[str] | None = None) -> None:
        self.source = source
        self.errors = errors
        super().__init__("\n".join(lines if lines is not None else [f"{source}: {e}" for e in errors]))

    @classmethod
    def of_documents(cls, source: str, docs: list[Document]) -> ManifestError:
        """The errors of a file's documents, one line each as `aistack validate` prints them:
        `file[doc]: field.path: message`."""
        return cls(source, [e for d in docs for e in d.errors],
                   lines=[f"{d.where}: {e}" for d in docs for e in d.errors])


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
        raise ManifestError(source,
                            [FieldError("<document>", f"expected a mapping, got {type(data).__name__}")])
    try:
        # camelCase only, as the CRD: the API server drops a `max_model_len` that the models'
        # Python names would accept, so validate must refuse it too.
        return AIStack.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as err:
        raise ManifestError(source, field_errors(err, root=AIStack, aliases=FIELD_ALIASES)) from None


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
                doc.errors = [FieldError("apiVersion",
                                         f"{data.get('apiVersion')!r} is not served; use {API_VERSION!r}")]
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


def holds_no_stack(docs: list[Document]) -> bool:
    """True when no document of a file is an AIStack (valid or not): only other kinds, or empty."""
    return all(d.stack is None and not d.errors for d in docs)


def no_stack_message(path: Path | str, docs: list[Document]) -> str:
    """Why a file gave no AIStack, naming what it does hold; the same words for every command."""
    kinds = sorted({d.skipped for d in docs if d.skipped})
    found = f"it holds only {', '.join(kinds)}" if kinds else "it has no YAML document"
    return (f"no AIStack found in {path} ({found}); an AIStack starts with "
            f"apiVersion: {API_VERSION} and kind: {KIND}")


def load_stack(path: Path | str, *, text: str | None = None) -> AIStack:
    """The single AIStack of a file (what `aistack up` and `render` take); `text` is its content
    when it was read already (standard input)."""
    docs = load_documents(path, text=text)
    if any(d.errors for d in docs):
        raise ManifestError.of_documents(str(path), docs)
    if holds_no_stack(docs):
        raise ManifestError(str(path), [FieldError("<file>", "no AIStack document")],
                            lines=[no_stack_message(path, docs)])
    stacks = [d.stack for d in docs if d.stack is not None]
    if len(stacks) != 1:
        where = ", ".join(d.where for d in docs if d.stack is not None)
        raise ManifestError(str(path),
                            [FieldError("<file>", f"expected exactly one AIStack, found {len(stacks)}")],
                            lines=[(f"{path}: expected exactly one AIStack, found {len(stacks)} ({where}); "
                                    "put each in a file of its own")])
    return stacks[0]
