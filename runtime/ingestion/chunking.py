"""Cutting sections into overlapping chunks along paragraph and sentence boundaries.

Sizes are in the embedder's tokens (`TokenMeter`): a local model's own word-pieces, an estimate
for a remote one. A chunk is never longer than the embedder reads (`TokenMeter.limit`), since a
sentence-transformers model silently drops what follows its limit. A chunk never crosses a
heading; inside a section, whole paragraphs are packed up to `size` tokens, a paragraph too long
for one chunk is cut at sentence ends (or word gaps, as a last resort), and each chunk after the
first starts with up to `overlap` tokens from the end of the previous one, cut at a word
boundary. The section heading is repeated at the top of every chunk so each one is
understandable, and retrievable, on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aistack.runtime.ingestion.documents import Document
from aistack.runtime.retrieval.tokens import TokenMeter

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n")


@dataclass(frozen=True)
class Chunk:
    text: str
    heading: str | None


def _head(text: str, tokens: int, meter: TokenMeter) -> int:
    """Where to cut `text` to keep at most `tokens` tokens: the last space, unless that loses half."""
    limit = meter.prefix(text, tokens)
    cut = text.rfind(" ", 0, limit + 1)
    return cut if cut > limit // 2 else max(limit, 1)


def _pieces(paragraph: str, limit: int, meter: TokenMeter) -> list[tuple[str, int]]:
    """One paragraph as pieces of at most `limit` tokens, each with its count."""
    size = meter.count(paragraph)
    if size <= limit:
        return [(paragraph, size)]
    out: list[tuple[str, int]] = []
    current, used = "", 0
    for sentence in _SENTENCE_END.split(paragraph):
        sentence = sentence.strip()
        if not sentence:
            continue
        cost = meter.count(sentence)
        while cost > limit:  # one huge sentence: cut at the last space within the limit
            if current:
                out.append((current, used))
                current, used = "", 0
            cut = _head(sentence, limit, meter)
            head = sentence[:cut].strip()
            out.append((head, meter.count(head)))
            sentence = sentence[cut:].strip()
            cost = meter.count(sentence)
        if current and used + cost > limit:
            out.append((current, used))
            current, used = sentence, cost
        else:
            current, used = f"{current} {sentence}".strip(), used + cost
    if current:
        out.append((current, used))
    return out


def _tail(text: str, overlap: int, meter: TokenMeter) -> str:
    """About the last `overlap` tokens of `text`, starting at a word."""
    if overlap <= 0 or not text:
        return ""
    total = meter.count(text)
    if total <= overlap:
        return text
    start = meter.prefix(text, total - overlap)
    space = text.find(" ", start)
    return text[space + 1:] if 0 <= space < len(text) - 1 else ""


def _within(text: str, limit: int, meter: TokenMeter) -> list[str]:
    """`text` cut further if it is still over `limit` (counts of parts need not add up exactly)."""
    out: list[str] = []
    while meter.count(text) > limit:
        cut = _head(text, limit, meter)
        out.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return [*out, text] if text else out


def chunk_document(document: Document, *, size: int, overlap: int, meter: TokenMeter) -> list[Chunk]:
    """The document's chunks, in order; each text is at most min(`size`, `meter.limit`) tokens."""
    size = max(min(size, meter.limit), 1)
    overlap = min(overlap, size // 2)
    chunks: list[Chunk] = []
    for section in document.sections:
        heading = section.heading or ""
        if meter.count(heading) > size // 2:  # a heading longer than half a chunk is cut down
            heading = heading[:meter.prefix(heading, size // 2)].rstrip()
        header = f"{heading}\n\n" if heading else ""
        header_tokens = meter.count(header)
        room = max(size - header_tokens - overlap, 1)
        pieces: list[tuple[str, int]] = []
        for paragraph in _PARAGRAPH.split(section.text):
            paragraph = paragraph.strip()
            if paragraph:
                pieces.extend(_pieces(paragraph, room, meter))
        body, used = "", 0
        bodies: list[str] = []
        for piece, cost in pieces:
            if body and used + cost > room:
                bodies.append(body)
                body, used = piece, cost
            else:
                body, used = (f"{body}\n\n{piece}" if body else piece), used + cost
        if body:
            bodies.append(body)
        previous = ""
        for body in bodies:
            lead = _tail(previous, overlap, meter)
            text = f"{lead} {body}" if lead else body
            for part in _within(header + text, size, meter):
                chunks.append(Chunk(text=part, heading=section.heading))
            previous = body
    return chunks
