"""The pipeline: retrieved passages + the spec's template -> the messages sent to the model.

Pure functions, no I/O: the gateway runs retrieval (concurrently with the input rails) and
hands the passages here, so this stays free of framework glue and trivially testable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aistack.runtime.retrieval.context import truncate_to_tokens
from aistack.runtime.retrieval.contracts import Passage
from aistack.runtime.retrieval.tokens import estimate_tokens

DEFAULT_TEMPLATE = "Context:\n{context}\n\nQuestion: {question}"
NO_CONTEXT = "(no relevant context was found)"


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, Any]]
    citations: list[dict[str, Any]]
    passages: list[Passage]
    """The passages the context holds, in citation order (`citations[i]` is `passages[i]`)."""


def format_context(passages: Sequence[Passage], *, max_context_tokens: int) -> tuple[str, list[Passage]]:
    """Numbered passages (`[1] (source) text`) within the token budget (`estimate_tokens`, as the
    retriever's), best first; the first is cut down to the budget when it alone exceeds it."""
    parts: list[str] = []
    used: list[Passage] = []
    spent = 0
    for passage in passages:
        block = f"[{len(used) + 1}] ({passage.title or passage.source}) {passage.text.strip()}"
        cost = estimate_tokens(block)
        if spent + cost > max_context_tokens:
            if used:
                break
            block = truncate_to_tokens(block, max_context_tokens)
        parts.append(block)
        used.append(passage)
        spent += cost
    return "\n\n".join(parts), used


def citation(index: int, passage: Passage) -> dict[str, Any]:
    out: dict[str, Any] = {"index": index, "source": passage.source, "score": round(float(passage.score), 6)}
    if passage.title:
        out["title"] = passage.title
    if passage.chunk_index is not None:
        out["chunk_index"] = passage.chunk_index
    return out


def build_prompt(*, messages: list[dict[str, Any]], question: str, passages: Sequence[Passage] | None,
                 system_prompt: str | None, template: str | None, max_context_tokens: int = 3000) -> Prompt:
    """The conversation with the spec's system prompt first and the last user turn templated.

    `passages=None` means the stack has no retrieval: the template is applied only when it does
    not need a context. With retrieval, an empty result fills `{context}` with a note, so the
    model knows it has nothing to ground on rather than an unexplained gap.
    """
    out = [dict(m) for m in messages]
    citations: list[dict[str, Any]] = []
    used: list[Passage] = []
    tmpl = template
    if passages is not None:
        tmpl = tmpl or DEFAULT_TEMPLATE
        context, used = format_context(passages, max_context_tokens=max_context_tokens)
        citations = [citation(i, p) for i, p in enumerate(used, start=1)]
        context = context or NO_CONTEXT
    else:
        context = NO_CONTEXT
        if tmpl is not None and "{context}" in tmpl:
            tmpl = None if "{question}" not in tmpl else tmpl
    if tmpl is not None:
        last_user = max((i for i, m in enumerate(out) if m.get("role") == "user"), default=None)
        if last_user is not None:
            out[last_user] = {**out[last_user], "content": tmpl.format(question=question, context=context)}
    if system_prompt:
        out.insert(0, {"role": "system", "content": system_prompt})
    return Prompt(messages=out, citations=citations, passages=used)
