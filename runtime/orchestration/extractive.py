"""Extractive answers: the model chooses one sentence of the retrieved passages, quoted as it is.

A tiny model (the offline SmolLM2-135M) writes fluent text that is not in any document. For it the
gateway asks a different question: which of these sentences, cut from the cited passages, answers
the question? The choice is enforced by the engine (vLLM's `structured_outputs.choice`, or the
offline transformers server scoring each candidate), so every sentence of the answer appears in a
cited document, and the answer says it is a quotation. Pure functions; the gateway does the I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aistack.runtime.retrieval.contracts import Passage

MAX_CANDIDATES = 32
MIN_CHARS = 25
"""Shorter pieces are headings or fragments, not answers."""
MAX_CHARS = 400
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[*_])")
_LINE_MARKER = re.compile(r"^\s*(?:[-*+>]\s+|\d+[.)]\s+|#+\s+)+")
_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)

INSTRUCTION = ("Quote the one sentence from the context that best answers the question. "
               "Copy it exactly; do not write anything else.")
NO_PASSAGE = ("No passage in the collection answers this question (extractive mode: the answer can "
              "only quote the documents).")


@dataclass(frozen=True)
class Candidate:
    text: str
    """A sentence exactly as it appears in the passage (markdown list and heading markers cut off)."""
    citation: int
    """The passage's number in the response's `citations` (1-based)."""


def sentences(text: str) -> list[str]:
    """The sentences of a passage: code blocks dropped, split at line breaks and sentence ends."""
    out: list[str] = []
    for line in _FENCE.sub("\n", text).splitlines():
        body = _LINE_MARKER.sub("", line).strip()
        out.extend(part.strip() for part in _SENTENCE_END.split(body) if part.strip())
    return out


def candidates(passages: Sequence[Passage]) -> list[Candidate]:
    """Up to MAX_CANDIDATES distinct sentences, best passage first, each tied to its citation."""
    seen: set[str] = set()
    out: list[Candidate] = []
    for number, passage in enumerate(passages, start=1):
        for sentence in sentences(passage.text):
            if not MIN_CHARS <= len(sentence) <= MAX_CHARS or sentence in seen:
                continue
            seen.add(sentence)
            out.append(Candidate(sentence, number))
            if len(out) == MAX_CANDIDATES:
                return out
    return out


def request(messages: list[dict[str, Any]], choices: Sequence[Candidate], *,
            max_tokens: int) -> dict[str, Any]:
    """The body sent to the engine: the prompt's messages with the instruction, greedy decoding,
    and the candidates as the only answers the engine may produce."""
    longest = max(len(c.text) for c in choices)
    return {
        "messages": [{"role": "system", "content": INSTRUCTION},
                     *[m for m in messages if m.get("role") != "system"]],
        "temperature": 0.0,
        # a sentence's tokens plus room: ~1 token per 3 characters of English, never under the spec's cap
        "max_tokens": max(max_tokens, longest // 2 + 16),
        "structured_outputs": {"choice": [c.text for c in choices]},
    }


def answer(chosen: str, choices: Sequence[Candidate], *, model: str) -> str:
    """The quoted sentence with its citation. Raises ValueError when the engine returned something
    that is not one of the candidates (an engine that ignored the constraint)."""
    text = chosen.strip()
    for candidate in choices:
        if candidate.text == text:
            return (f"{candidate.text} [{candidate.citation}]\n\n"
                    f"(Extractive answer: {model} chose this sentence from the cited documents; "
                    "it is quoted, not written.)")
    raise ValueError(f"the engine answered {text[:80]!r}, which is not one of the "
                     f"{len(choices)} sentences it was given")
