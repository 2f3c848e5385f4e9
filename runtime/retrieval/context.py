"""Fitting retrieved passages into the prompt's token budget, and numbering them for citations.

Tokens are estimated, not counted with the generating model's tokenizer (the gateway may not
know it, e.g. a hosted API), with `estimate_tokens`, the one estimate the prompt's context
(`aistack.runtime.orchestration.pipeline`) uses too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from aistack.runtime.retrieval.contracts import Passage
from aistack.runtime.retrieval.tokens import EstimatedMeter, estimate_tokens


def truncate_to_tokens(text: str, budget: int) -> str:
    """The longest prefix (cut at a word boundary) estimated within `budget` tokens, marked `…`."""
    cut = text[:EstimatedMeter(limit=budget).prefix(text, max(budget - 1, 0))]  # the mark costs one
    space = cut.rfind(" ")
    return (cut[:space] if space > len(cut) // 2 else cut).rstrip() + " …"


def fit_to_budget(passages: Sequence[Passage], *, max_tokens: int) -> list[Passage]:
    """Best-first passages whose texts fit in `max_tokens` together.

    Passages are taken in rank order; one that does not fit is skipped (a shorter, lower-ranked
    one may still fit). Only when nothing fits is the best passage cut down to the budget, so a
    question always gets some context when something relevant was found.
    """
    kept: list[Passage] = []
    used = 0
    for passage in passages:
        cost = estimate_tokens(passage.text)
        if used + cost <= max_tokens:
            kept.append(passage)
            used += cost
    if not kept and passages:
        first = passages[0]
        kept.append(replace(first, text=truncate_to_tokens(first.text, max_tokens),
                            metadata={**first.metadata, "truncated": True}))
    return kept


def format_context(passages: Sequence[Passage]) -> str:
    """`[n] title (source)` blocks, numbered as the answer cites them."""
    blocks = []
    for n, passage in enumerate(passages, start=1):
        label = f"{passage.title} ({passage.source})" if passage.title else passage.source
        blocks.append(f"[{n}] {label}\n{passage.text}")
    return "\n\n".join(blocks)


def citations(passages: Sequence[Passage]) -> list[dict[str, object]]:
    """What an answer returns beside its text: one entry per passage, in citation order."""
    return [
        {"index": n, "source": p.source, "title": p.title, "score": round(p.score, 4),
         "chunk_index": p.chunk_index}
        for n, p in enumerate(passages, start=1)
    ]
