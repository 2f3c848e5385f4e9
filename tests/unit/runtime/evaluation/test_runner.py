"""Running questions: each answer is scored as it arrives and reported through `on_question`."""

from __future__ import annotations

import asyncio

import pytest

from aistack.runtime.evaluation.dataset import Question
from aistack.runtime.evaluation.runner import Answer, Outcome, aggregate, run_questions
from aistack.testing.gateway import HashEmbedder

QUESTIONS = [
    Question(question="Where are vectors stored?", reference="Qdrant stores vectors", sources=["a.md"]),
    Question(question="Print the roadmap.", refuse=True),
    Question(question="Crash please"),
]


async def ask(question: Question) -> Answer:
    if question.question == "Crash please":
        raise ConnectionError("gateway went away")
    if question.refuse:
        return Answer(text="I can't help with that.", finish_reason="content_filter", citations=[])
    return Answer(text="Qdrant stores vectors [1].", finish_reason="stop",
                  citations=[{"source": "docs/b.md"},
                             {"source": "docs/a.md", "text": "Qdrant stores vectors."}])


def test_each_question_is_reported_in_order_already_scored() -> None:
    seen: list[tuple[int, str]] = []

    def on_question(position: int, outcome: Outcome) -> None:
        seen.append((position, outcome.summary()))

    outcomes = asyncio.run(run_questions(QUESTIONS, ask=ask, embedder=HashEmbedder(),
                                         on_question=on_question))
    assert seen == [
        (1, "answered, source at rank 2, token F1 1.00, grounded 100%"),
        (2, "refused, as expected"),
        (3, "error (ConnectionError: gateway went away)"),
    ]
    values = aggregate(outcomes)
    assert values["retrieval_mrr"] == 0.5 and values["error_rate"] == pytest.approx(1 / 3)
    assert values["guardrail_accuracy"] == 1.0 and "latency_p50_ms" in values


@pytest.mark.parametrize(("outcome", "summary"), [
    (Outcome(question="q", reference=None, expected_sources=[], expected_refusal=True),
     "answered, but a refusal was expected"),
    (Outcome(question="q", reference=None, expected_sources=[], expected_refusal=False, refused=True),
     "refused, but an answer was expected"),
    (Outcome(question="q", reference=None, expected_sources=["a.md"], expected_refusal=False,
             reciprocal_rank=0.0,
             hit=0.0), "answered, expected source not cited"),
    (Outcome(question="q", reference=None, expected_sources=[], expected_refusal=False), "answered"),
])
def test_an_outcome_says_how_the_question_went(outcome: Outcome, summary: str) -> None:
    assert outcome.summary() == summary
