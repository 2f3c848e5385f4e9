"""Counting text in tokens: estimated (any model) or with an embedder's own tokenizer.

`estimate_tokens` is the one estimate of how many tokens a text costs a model whose tokenizer
the gateway does not have (a hosted API, a vLLM engine elsewhere): the retrieval context budget
and the prompt's context both use it, and so does chunking for a remote embedder. It is built to
stay at or above byte-level BPE counts (SmolLM2's, measured) and WordPiece counts: an English word
costs a token per 4 letters past the first 4, a word of a text written in a Latin-script language
other than English (one with accented letters: German, French) a token per 2.5 letters past the
first 2 (such words split into short pieces in English-centred vocabularies), a digit or a
punctuation mark one, other non-ASCII characters one, and CJK ideographs, kana and Hangul two
(byte-level vocabularies often spend two tokens on one of them).

A `TokenMeter` counts and cuts text in one unit: `TokenizerMeter` with a local embedder's real
tokenizer (its word-pieces), `EstimatedMeter` with the estimate.
"""

from __future__ import annotations

import math
import re
from typing import Any, Protocol

_PIECE = re.compile(r"[A-Za-z]+|[^\sA-Za-z]")
_ACCENTED = re.compile(r"[\u00c0-\u024f]")
_WIDE = 0x2E80
"""From the CJK radicals on, scripts whose characters cost byte-level BPE about two tokens."""
_FOREIGN_SHARE = 0.005
"""A text with at least this share of accented letters among its letters is taken for a
non-English Latin-script language (German prose has ~1.5%, English ~0)."""


def estimate_tokens(text: str) -> int:
    """Tokens `text` costs a model, estimated from above (see the module's docstring)."""
    if not text:
        return 0
    accented = len(_ACCENTED.findall(text))
    foreign = accented > 0 and accented >= _FOREIGN_SHARE * sum(1 for c in text if c.isalpha())
    free, per = (2, 2.5) if foreign else (4, 4.0)
    total = 0
    for piece in _PIECE.findall(text):
        first = piece[0]
        if first.isascii():
            total += 1 + math.ceil(max(0, len(piece) - free) / per) if first.isalpha() else 1
        else:
            total += 2 if ord(first) >= _WIDE else 1
    return total


class TokenMeter(Protocol):
    """Counts text in one unit and knows how much of it an embedder reads."""

    @property
    def limit(self) -> int:
        """Tokens of text the embedder reads at most (its special tokens excluded)."""

    @property
    def unit(self) -> str:
        """What is counted, for messages: `word-pieces of all-MiniLM-L6-v2`, `estimated tokens`."""

    def count(self, text: str) -> int: ...

    def prefix(self, text: str, tokens: int) -> int:
        """The length in characters of the longest prefix of `text` within `tokens` tokens."""


class EstimatedMeter:
    """`estimate_tokens` with a declared limit (a remote embedder's `maxInputTokens`)."""

    unit = "estimated tokens"

    def __init__(self, *, limit: int) -> None:
        self.limit = limit

    def count(self, text: str) -> int:
        return estimate_tokens(text)

    def prefix(self, text: str, tokens: int) -> int:
        lo, hi = 0, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if estimate_tokens(text[:mid]) <= tokens:
                lo = mid
            else:
                hi = mid - 1
        return lo


class TokenizerMeter:
    """A Hugging Face fast tokenizer's own count (what the model truly reads)."""

    def __init__(self, tokenizer: Any, *, limit: int, name: str) -> None:
        self._tokenizer = tokenizer
        self.limit = limit
        self.unit = f"word-pieces of {name}"

    def count(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def prefix(self, text: str, tokens: int) -> int:
        if tokens <= 0:
            return 0
        encoded = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if len(offsets) <= tokens:
            return len(text)
        return int(offsets[tokens][0])
