"""Cutting sections into overlapping chunks along paragraph and sentence boundaries.

A chunk never crosses a heading; inside a section, whole paragraphs are packed up to `size`
characters, a paragraph too long for one chunk is cut at sentence ends (or word gaps, as a
last resort), and each chunk after the first starts with up to `overlap` characters from the
end of the previous one, cut at a word boundary. The section heading is repeated at the top
of every chunk so each one is understandable, and retrievable, on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aistack.runtime.ingestion.documents import Document

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|\n")


@dataclass(frozen=True)
class Chunk:
    text: str
    heading: str | None


def _pieces(paragraph: str, limit: int) -> list[str]:
    """Split one paragraph into pieces of at most `limit` characters."""
    if len(paragraph) <= limit:
        return [paragraph]
    out: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(paragraph):
        sentence = sentence.strip()
        if not sentence:
            continue
        while len(sentence) > limit:  # one huge sentence: cut at the last space before the limit
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            if current:
                out.append(current)
                current = ""
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > limit:
            out.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        out.append(current)
    return out


def _tail(text: str, overlap: int) -> str:
    if overlap <= 0 or not text:
        return ""
    tail = text[-overlap:]
    space = tail.find(" ")
    return tail[space + 1:] if 0 <= space < len(tail) - 1 and len(text) > overlap else tail


def chunk_document(document: Document, *, size: int, overlap: int) -> list[Chunk]:
    """The document's chunks, in order; each text is at most about `size` characters."""
    chunks: list[Chunk] = []
    for section in document.sections:
        header = f"{section.heading}\n\n" if section.heading else ""
        room = max(size - len(header) - overlap, size // 4)
        pieces: list[str] = []
        for paragraph in _PARAGRAPH.split(section.text):
            paragraph = paragraph.strip()
            if paragraph:
                pieces.extend(_pieces(paragraph, room))
        body = ""
        bodies: list[str] = []
        for piece in pieces:
            if body and len(body) + 2 + len(piece) > room:
                bodies.append(body)
                body = piece
            else:
                body = f"{body}\n\n{piece}" if body else piece
        if body:
            bodies.append(body)
        previous = ""
        for body in bodies:
            lead = _tail(previous, overlap)
            text = f"{lead} {body}" if lead else body
            chunks.append(Chunk(text=header + text, heading=section.heading))
            previous = body
    return chunks
