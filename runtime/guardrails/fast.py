"""Rails that need no LLM: they run first, in our own code, in microseconds.

NeMo Guardrails costs milliseconds per rail even for a regex (see notes/offline-ai.md), so the
cheap checks never go through it; only `self_check_*` do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from aistack.api.v1alpha1.guardrails import GuardrailsSpec

Status = Literal["passed", "modified", "blocked"]
SCREENED_ROLES = frozenset({"user", "system", "developer"})
"""Roles whose text every input rail screens; the others (assistant, tool) are masked only."""


@dataclass(frozen=True)
class RailDecision:
    """The outcome of the rails on one text: `text` is what continues (masked when modified)."""

    status: Status
    text: str
    rail: str | None = None

    @property
    def blocked(self) -> bool:
        return self.status == "blocked"


# Phrases of well-known prompt-injection and jailbreak attempts. A heuristic, not a judge:
# `self_check_input` catches what these miss.
JAILBREAK_PATTERNS = [
    r"\bignore\s+(all\s+|any\s+)?(the\s+|your\s+)?(previous|prior|above|earlier|preceding)\s+(instructions|prompts?|rules|directions)",
    r"\bdisregard\s+(all\s+|any\s+)?(the\s+|your\s+)?(previous|prior|above|system)?\s*(instructions|rules|guidelines|prompt)",
    r"\bforget\s+(all\s+)?(your|the|previous)\s+(instructions|rules|guidelines)",
    r"\byou\s+are\s+now\s+(DAN|in\s+developer\s+mode|unfiltered|jailbroken)",
    r"\b(developer|god|jailbreak|DAN)\s+mode\b",
    r"\bdo\s+anything\s+now\b",
    r"\bpretend\s+(that\s+)?you\s+(are|have)\s+no\s+(rules|restrictions|filters|guidelines)",
    r"\b(reveal|print|show|repeat|output)\s+(me\s+)?(your|the)\s+(system\s+prompt|hidden\s+instructions|initial\s+instructions)",
    r"\bwithout\s+(any\s+)?(restrictions|filters|censorship)\b",
]

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
PHONE = re.compile(
    r"(?<![\w+])(?<!\d[ .-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])"
    r"\d{3,4}[\s.-]?\d{3,4}\b(?![ .-]?\d)")


def _luhn(digits: str) -> bool:
    total, odd = 0, False
    for ch in reversed(digits):
        d = int(ch)
        if odd:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        odd = not odd
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


def mask_pii(text: str) -> str:
    """E-mail addresses, card numbers (Luhn-valid) and phone numbers replaced by placeholders."""
    text = EMAIL.sub("[EMAIL]", text)
    text = CARD.sub(_mask_card, text)
    return PHONE.sub("[PHONE]", text)


class FastRails:
    """The fast rails of one side (input or output), compiled once per config."""

    def __init__(self, *, spec: GuardrailsSpec, side: Literal["input", "output"]) -> None:
        rails: Iterable[str] = spec.input if side == "input" else spec.output
        self.rails = [r for r in rails if not r.startswith("self_check")]
        self.max_chars = spec.max_input_chars if side == "input" else spec.max_output_chars
        terms = sorted(spec.blocked_terms, key=len, reverse=True)
        self._terms = re.compile(r"(?<!\w)(" + "|".join(re.escape(t) for t in terms) + r")(?!\w)",
                                 re.I) if terms else None
        self._jailbreak = re.compile("|".join(f"(?:{p})" for p in JAILBREAK_PATTERNS), re.I)
        self.longest_term = max((len(t) for t in terms), default=0)

    def __bool__(self) -> bool:
        return bool(self.rails)

    @property
    def term_pattern(self) -> re.Pattern[str] | None:
        """The blocked terms as one pattern (whole words, any case); None without terms."""
        return self._terms

    def check(self, text: str, *, whole: bool = True, screen: bool = True) -> RailDecision:
        """One text through the rails in order. `whole=False`: a part of a conversation (its length
        is judged over the whole); `screen=False`: only masked (no blocked terms or jailbreaks)."""
        status: Status = "passed"
        for rail in self.rails:
            if rail == "max_length" and whole and len(text) > self.max_chars:
                return RailDecision("blocked", text, "max_length")
            if not screen and rail != "pii_mask":
                continue
            if rail == "blocked_terms" and self._terms is not None and self._terms.search(text):
                return RailDecision("blocked", text, "blocked_terms")
            if rail == "jailbreak_heuristics" and self._jailbreak.search(text):
                return RailDecision("blocked", text, "jailbreak_heuristics")
            if rail == "pii_mask":
                masked = mask_pii(text)
                if masked != text:
                    text, status = masked, "modified"
        return RailDecision(status, text, None)

    def check_conversation(self, turns: Sequence[tuple[str, str]]) -> tuple[RailDecision, list[str]]:
        """Every text of a conversation the client sent, as (role, text) in order: (decision, the
        texts that continue, masked). A client writes every turn, so an earlier turn or a system
        message is screened like the last question; `max_length` bounds the whole conversation.
        Assistant and tool turns are masked only: an answer that quotes a jailbreak phrase or a
        blocked term to refuse it must not block the next question."""
        if "max_length" in self.rails and sum(len(text) for _, text in turns) > self.max_chars:
            return RailDecision("blocked", "", "max_length"), []
        status: Status = "passed"
        texts = []
        for role, text in turns:
            decision = self.check(text, whole=False, screen=role in SCREENED_ROLES)
            if decision.blocked:
                return decision, []
            if decision.status == "modified":
                status = "modified"
            texts.append(decision.text)
        return RailDecision(status, texts[-1] if texts else "", None), texts

    def find_blocked_term(self, text: str) -> re.Match[str] | None:
        return self._terms.search(text) if self._terms is not None and "blocked_terms" in self.rails else None
