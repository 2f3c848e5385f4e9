from __future__ import annotations

from aistack.runtime.retrieval.context import citations, fit_to_budget, format_context
from aistack.runtime.retrieval.tokens import estimate_tokens
from aistack.runtime.retrieval.contracts import Passage


def p(text: str, score: float, source: str = "s.md", title: str | None = "T") -> Passage:
    return Passage(text=text, source=source, score=score, title=title, chunk_index=0)


def test_passages_are_kept_best_first_within_the_budget() -> None:
    big, small, small2 = p("word " * 50, 0.9), p("tiny one", 0.8), p("tiny two", 0.7)
    assert estimate_tokens(big.text) == 50
    kept = fit_to_budget([big, small, small2], max_tokens=53)
    assert [k.text for k in kept] == [big.text, "tiny one"]
    assert [k.text for k in fit_to_budget([small, big, small2], max_tokens=20)] == ["tiny one", "tiny two"]


def test_when_nothing_fits_the_best_passage_is_cut_to_the_budget() -> None:
    [kept] = fit_to_budget([p("alpha beta gamma " * 100, 0.9)], max_tokens=64)
    assert kept.metadata["truncated"] is True
    assert estimate_tokens(kept.text) <= 64 and kept.text.endswith("…")
    assert fit_to_budget([], max_tokens=64) == []


def test_context_and_citations_are_numbered_alike() -> None:
    passages = [p("first", 0.91234, "a.md", "Alpha"), p("second", 0.5, "b.txt", None)]
    assert format_context(passages) == "[1] Alpha (a.md)\nfirst\n\n[2] b.txt\nsecond"
    assert citations(passages) == [
        {"index": 1, "source": "a.md", "title": "Alpha", "score": 0.9123, "chunk_index": 0},
        {"index": 2, "source": "b.txt", "title": None, "score": 0.5, "chunk_index": 0},
    ]
