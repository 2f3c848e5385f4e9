"""Extractive answers: the model chooses one sentence of the retrieved passages, quoted as it is.

A tiny model (the offline SmolLM2-135M) writes fluent text that is not in any document. For it the
gateway asks a different question: which of these sentences, cut from the cited passages, answers
the question? The choice is enforced by the engine (vLLM's `structured_outputs.choice`, or the
offline transformers server scoring each candidate), so every sentence of the answer appears in a
cited document, and the response's notice says it is a quotation. Pure functions; the gateway does the I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aistack.runtime.retrieval.contracts import Passage

MAX_CANDIDATES = 32
SHORTLIST = 4
MARGIN = 0.1
"""With an embedder, the model chooses only among the sentences within MARGIN (cosine) of the one
closest to the question, at most SHORTLIST of them. Measured on the demo's documents: SmolLM2-135M
chose a wrong sentence for each of three questions out of four candidates (vLLM's greedy choice and
the offline server's mean log-probability alike), while MiniLM ranked the right one first for all
three, by 0.2 or more; so the embedder shortlists and the model breaks near-ties."""
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
    """The sentences of a passage: code blocks dropped; a paragraph's wrapped lines joined (a list
    item or heading starts a new one); split at sentence ends."""
    blocks: list[str] = []
    joined = True  # a blank line, a heading or a list marker ends the block before
    for line in _FENCE.sub("\n", text).splitlines():
        body = _LINE_MARKER.sub("", line).strip()
        starts = body != line.strip()
        if not body:
            joined = True
        elif joined or starts or not blocks:
            blocks.append(body)
            joined = line.lstrip().startswith("#")  # a heading is a block of its own
        else:
            blocks[-1] += " " + body
    return [part.strip() for block in blocks for part in _SENTENCE_END.split(block) if part.strip()]


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


def shortlist(choices: Sequence[Candidate], *, question: Sequence[float], vectors: Sequence[Sequence[float]],
              keep: int = SHORTLIST, margin: float = MARGIN) -> list[Candidate]:
    """The candidates whose vectors are within `margin` (cosine) of the closest to the question's,
    at most `keep`, closest first."""
    def cosine(a: Sequence[float], b: Sequence[float]) -> float:
        norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0

    scores = [cosine(question, vector) for vector in vectors]
    ranked = sorted(range(len(choices)), key=lambda i: -scores[i])
    best = scores[ranked[0]] if ranked else 0.0
    return [choices[i] for i in ranked[:keep] if scores[i] >= best - margin]


def notice(model: str) -> str:
    """What the answer is, said beside it (the `x-aistack-notice` header), never in its text."""
    return (f"extractive answer: {model} chose this sentence from the cited documents; "
            "it is quoted, not written")


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


def answer(chosen: str, choices: Sequence[Candidate]) -> str:
    """The quoted sentence with its citation. Raises ValueError when the engine returned something
    that is not one of the candidates (an engine that ignored the constraint)."""
    text = chosen.strip()
    for candidate in choices:
        if candidate.text == text:
            return f"{candidate.text} [{candidate.citation}]"
    raise ValueError(f"the engine answered {text[:80]!r}, which is not one of the "
                     f"{len(choices)} sentences it was given")
