"""The output rails over a stream: what a split term or number does, and that each character is
checked a bounded number of times (the old guard reran every rail over the whole answer)."""

from __future__ import annotations

import random

import pytest

from aistack.api.v1alpha1.guardrails import GuardrailsSpec
from aistack.runtime.guardrails import stream
from aistack.runtime.guardrails.fast import mask_pii
from aistack.runtime.guardrails.guard import Guard
from aistack.runtime.guardrails.stream import StreamGuard

BOTH = GuardrailsSpec(output=["blocked_terms", "pii_mask"],
                      blocked_terms=["internal-only", "Project X", "bomb"])
MASK = GuardrailsSpec(output=["pii_mask"])


def guard(spec: GuardrailsSpec = BOTH) -> StreamGuard:
    return StreamGuard(Guard(spec=spec, llm=None))


def run(sg: StreamGuard, parts: list[str]) -> str:
    """What the client receives: the released parts, then the rest at the end (unless blocked)."""
    sent = ""
    for part in parts:
        sent += sg.feed(part)
        if sg.decision.blocked:
            return sent
    return sent + sg.flush()


def split(text: str, rng: random.Random, most: int = 7) -> list[str]:
    parts, i = [], 0
    while i < len(text):
        n = rng.randint(1, most)
        parts.append(text[i:i + n])
        i += n
    return parts


FILLER = "The gateway streams the answer while the rails watch it, one delta at a time. "


@pytest.mark.parametrize("term", ["internal-only", "Project X"])
def test_a_term_split_across_deltas_is_blocked_before_any_of_it_is_sent(term):
    text = FILLER * 3 + f"see the {term} plan " + FILLER
    at = text.index(term)
    for cut in range(at, at + len(term) + 1):
        for tail in (1, 3):
            sg = guard()
            sent = run(sg, [text[:cut], *[text[i:i + tail] for i in range(cut, len(text), tail)]])
            assert sg.decision.rail == "blocked_terms", cut
            assert term[:3].lower() not in sent.lower() and text.startswith(sent)


def test_a_term_that_goes_on_as_a_longer_word_is_not_blocked():
    sg = guard()
    sent = run(sg, [FILLER, "the bomb", "ing of the ", "old bridge. ", FILLER])
    assert not sg.decision.blocked and "bombing" in sent


def test_a_card_number_split_across_deltas_is_masked_at_every_split():
    text = FILLER + "pay with 4111 1111 1111 1111 today. " + FILLER
    for cut in range(text.index("4111"), text.index(" today") + 1):
        sg = guard()
        assert run(sg, [text[:cut], text[cut:cut + 2], text[cut + 2:]]) == mask_pii(text)


def test_an_address_longer_than_any_window_is_masked_whole():
    address = "a" * 150 + "@" + "mail." * 30 + "example.org"
    text = FILLER + f"write to {address} now. " + FILLER
    rng = random.Random(7)
    sent = run(guard(MASK), split(text, rng, 4))
    assert sent == mask_pii(text) and "aaaa" not in sent


def test_streamed_masking_equals_masking_the_whole_answer():
    pieces = ["jane.doe@example.co.uk", "4111-1111-1111-1111", "call +1 415-555-0100", "(030) 1234 5678",
              "order 12345 in 2026", "1234 5678 9012 3456", "x@y", "a.b-c", "—", "日本語の文章です。",
              "4111111111111111", "ref 12 34", "\n", "  ", "e-mail: bob@corp.io,", "555 123 4567 8"]
    rng = random.Random(2026)
    for _ in range(300):
        words = [rng.choice(pieces) if rng.random() < 0.3 else rng.choice(FILLER.split())
                 for _ in range(rng.randint(1, 80))]
        text = "".join(w + rng.choice([" ", " ", "", ", ", "\n"]) for w in words)
        assert run(guard(MASK), split(text, rng)) == mask_pii(text), text


def test_text_is_released_before_the_end():
    sg = guard()
    released = "".join(sg.feed(part) for part in split(FILLER * 10, random.Random(1), 4))
    assert len(released) > len(FILLER) * 8 and (FILLER * 10).startswith(released)


def test_each_character_is_masked_once_and_searched_about_twice(monkeypatch):
    masked: list[int] = []
    searched: list[int] = []
    real_mask = stream.mask_pii
    monkeypatch.setattr(stream, "mask_pii", lambda text: masked.append(len(text)) or real_mask(text))
    sg = guard()
    pattern = sg._terms
    assert pattern is not None

    class Counting:
        def search(self, text: str, pos: int = 0):
            searched.append(len(text) - pos)
            return pattern.search(text, pos)

    sg._terms = Counting()  # type: ignore[assignment]
    text = (FILLER + "mail me at jane@example.com or call 030 1234 5678. ") * 100  # ~13k characters
    assert run(sg, [text[i:i + 4] for i in range(0, len(text), 4)]) == mask_pii(text)
    assert sum(masked) < 1.05 * len(text) and sum(searched) < 1.5 * len(text)


def test_max_length_blocks_a_long_answer():
    sg = guard(GuardrailsSpec(output=["max_length"], max_output_chars=100))
    run(sg, ["x" * 60, "y" * 60])
    assert sg.decision.rail == "max_length"


def test_without_output_rails_deltas_pass_through():
    sg = guard(GuardrailsSpec(input=["pii_mask"]))
    assert sg.window == 0 and sg.feed("abc") == "abc" and sg.flush() == ""


def test_numbered_words_are_released_before_the_end():
    text = " ".join(f"w{i}" for i in range(60)) + " and 4111 1111 1111 1111 +1 415-555-0100 end"
    sg = guard()
    released = "".join(sg.feed(part) for part in split(text, random.Random(3), 3))
    assert len(released) > 100 and text.startswith(released)
    assert released + sg.flush() == mask_pii(text)
