"""The fast output rails over a streamed answer, in time linear in its length.

Rerunning every rail over the whole answer on each delta costs the square of its length (an
8k-character answer in 4-character deltas was 0.86 s of event-loop CPU). Here each character is
masked once and searched for blocked terms about twice:

- text is released in batches at a *safe cut*: a position no PII match (`fast.EMAIL`, `CARD`,
  `PHONE`) can span, so a card number or an e-mail address of any length is never split, and
  masking the released segment alone (with two characters of context each side for the
  patterns' look-arounds) gives what masking the whole answer gives;
- the last `longest blocked term + 1` characters are always held back and searched again with
  the next batch, so a term split across deltas is caught before any part of it is sent.

A run of characters without a safe cut (a long number, a base64 blob) is held up to
`max_hold_chars`, then cut where it stands.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

from aistack.runtime.guardrails.fast import RailDecision, mask_pii

if TYPE_CHECKING:
    from aistack.runtime.guardrails.guard import Guard

# Characters that may be part of a PII match. Whitespace may be too, between a digit or ')' and a
# digit or '(' (inside a card or phone number); and a phone starting ('+', '(' or a digit) right
# after "<digit> " reads that digit, which the whole answer's masking may have replaced.
_PII_CHARS = frozenset(string.ascii_letters + string.digits + "._%+-@()")
_BEFORE_SEPARATOR = frozenset(string.digits + ")")
_AFTER_SEPARATOR = frozenset(string.digits + "(+")
CONTEXT_CHARS = 2
"""Released characters kept for the patterns' look-behinds (`(?<!\\d[ .-])` reads two)."""


def safe_cut(text: str, at: int) -> bool:
    """Whether no PII match can contain `text[at - 1]` (`text[at]` must exist)."""
    ch = text[at - 1]
    if ch.isspace():
        return at < 2 or text[at - 2] not in _BEFORE_SEPARATOR or text[at] not in _AFTER_SEPARATOR
    return ch not in _PII_CHARS


class StreamGuard:
    """Output rails over a stream: feed deltas, send what `feed` returns, then `flush` at the end.

    With `self_check_output` the whole answer is held back (the fast rails still block early)
    until the LLM rail has judged it.
    """

    def __init__(self, guard: Guard, *, batch_chars: int = 64, max_hold_chars: int = 2048) -> None:
        fast = guard.fast_output
        self.hold_all = guard.llm_output
        self._terms = fast.term_pattern if "blocked_terms" in fast.rails else None
        self._mask = "pii_mask" in fast.rails
        self._max_chars = fast.max_chars if "max_length" in fast.rails else None
        self._active = bool(fast.rails)
        self.window = fast.longest_term + 1 if self._terms is not None else 0
        """Characters always held back: a blocked term may still be forming in them."""
        self._batch = batch_chars
        self._max_hold = max(max_hold_chars, 2 * (self.window + batch_chars))
        self._parts: list[str] = []
        self._pending = 0
        self._next_round = self.window + batch_chars
        self._context = ""
        self._total = 0
        self._held: list[str] = []
        self.sent = 0
        """Characters released to the client so far."""
        self.decision = RailDecision("passed", "", None)

    def feed(self, delta: str) -> str:
        """Text that may be sent now; sets `decision` when a rail blocks (then send nothing more)."""
        if not self._active:
            if self.hold_all:
                self._held.append(delta)
                return ""
            self.sent += len(delta)
            return delta
        self._parts.append(delta)
        self._pending += len(delta)
        self._total += len(delta)
        if self._max_chars is not None and self._total > self._max_chars:
            self.decision = RailDecision("blocked", "", "max_length")
            return ""
        if self._pending < self._next_round:
            return ""
        return self._release(self._round(final=False))

    def flush(self) -> str:
        """The rest of the answer once the upstream is done (with everything held for the LLM rail)."""
        if self.decision.blocked:
            return ""
        last = self._round(final=True) if self._active else ""
        if self.decision.blocked:
            return ""
        out = "".join(self._held) + last
        self._held = []
        self.sent += len(out)
        return out

    def _release(self, text: str) -> str:
        if not text or self.hold_all:
            if text:
                self._held.append(text)
            return ""
        self.sent += len(text)
        return text

    def _round(self, *, final: bool) -> str:
        """Check the pending text; return the part that may leave (masked), keep the rest pending."""
        base = len(self._context)
        s = self._context + "".join(self._parts)
        if self._terms is not None:
            match = self._terms.search(s, base)
            # A match at the very end may still grow into a longer word ("bomb" -> "bombing").
            if match is not None and (final or match.end() < len(s)):
                self.decision = RailDecision("blocked", "", "blocked_terms")
                return ""
        cut, forced = len(s), False
        if not final:
            cut = len(s) - max(self.window, 1)  # at least one character of right context stays
            while cut > base and not safe_cut(s, cut):
                cut -= 1
            if cut <= base:
                if len(s) - base < self._max_hold:
                    self._next_round = self._pending + self._batch
                    return ""
                cut, forced = len(s) - max(self.window, 1), True
        if not self._mask:
            out = s[base:cut]
        elif final or forced:
            out = mask_pii(s[:cut])[base:]
        else:  # with the right context the patterns' look-aheads read; a safe cut leaves it unchanged
            out = mask_pii(s[:cut + 1])[base:-1]
        rest = s[cut:]
        self._parts = [rest] if rest else []
        self._pending = len(rest)
        self._next_round = self._pending + self._batch
        # After a forced cut the context may be half a match: better none than a misaligned one.
        self._context = "" if forced else s[max(0, cut - CONTEXT_CHARS):cut]
        return out
