"""Running a dataset through a gateway and scoring every answer.

Questions go through the OpenAI SDK, one at a time (so latencies are not queueing time), and
each answer is scored as it arrives, so a caller can show progress question by question. The
gateway's answer carries `citations` (source, title, score) in rank order: they give hit rate
and MRR. Groundedness needs the passages' text: taken from the citations when they carry it,
else from a `ContextSource` (the stack's own retriever, asked the same question).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from aistack.runtime.evaluation import metrics as m
from aistack.runtime.evaluation.dataset import Question
from aistack.runtime.retrieval.contracts import Embedder

ContextSource = Callable[[str], Awaitable[list[str]]]


@dataclass
class Outcome:
    """One question's answer and scores (a row of the per-question table)."""

    question: str
    reference: str | None
    expected_sources: list[str]
    expected_refusal: bool
    answer: str = ""
    retrieved_sources: list[str] = field(default_factory=list)
    refused: bool = False
    error: str | None = None
    latency_ms: float = math.nan
    hit: float | None = None
    reciprocal_rank: float | None = None
    token_f1: float | None = None
    similarity: float | None = None
    groundedness: float | None = None
    context: list[str] = field(default_factory=list, repr=False)
    """Passage texts the answer was given, when the gateway returns them."""

    def row(self) -> dict[str, Any]:
        row = asdict(self)
        del row["context"]
        row["expected_sources"] = ", ".join(self.expected_sources)
        row["retrieved_sources"] = ", ".join(self.retrieved_sources)
        return row

    def summary(self) -> str:
        """How the question went, in a few words (the progress line of `aistack eval`)."""
        if self.error is not None:
            return f"error ({self.error.splitlines()[0][:80]})"
        if self.expected_refusal:
            return "refused, as expected" if self.refused else "answered, but a refusal was expected"
        if self.refused:
            return "refused, but an answer was expected"
        parts = ["answered"]
        if self.reciprocal_rank is not None:
            parts.append(f"source at rank {round(1 / self.reciprocal_rank)}" if self.reciprocal_rank
                         else "expected source not cited")
        if self.token_f1 is not None:
            parts.append(f"token F1 {self.token_f1:.2f}")
        if self.groundedness is not None:
            parts.append(f"grounded {self.groundedness:.0%}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str | None
    citations: list[dict[str, Any]]


Ask = Callable[[Question], Awaitable[Answer]]


def openai_asker(*, base_url: str, model: str, api_key: str | None, timeout_seconds: float = 120.0,
                 headers: dict[str, str] | None = None) -> Ask:
    """Ask through the OpenAI SDK; `citations` is read from the gateway's extra field; `headers` go
    with every question (the model version to pin)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_seconds, max_retries=0,
                         default_headers=headers)

    async def ask(question: Question) -> Answer:
        response = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question.question}])
        choice = response.choices[0]
        extra = response.model_extra or {}
        return Answer(text=choice.message.content or "", finish_reason=choice.finish_reason,
                      citations=list(extra.get("citations") or []))

    return ask


OnQuestion = Callable[[int, Outcome], None]
"""Called after each question is asked and scored, with its 1-based position and outcome."""


async def run_questions(questions: Sequence[Question], *, ask: Ask, embedder: Embedder,
                        context_source: ContextSource | None = None,
                        on_question: OnQuestion | None = None) -> list[Outcome]:
    """Ask each question in turn and score its answer at once, so `on_question` can say how
    each one went while the rest are still running (an evaluation takes minutes)."""
    outcomes = []
    for position, q in enumerate(questions, start=1):
        outcome = await _ask(q, ask=ask)
        await _score(outcome, embedder=embedder, context_source=context_source)
        outcomes.append(outcome)
        if on_question is not None:
            on_question(position, outcome)
    return outcomes


async def _ask(q: Question, *, ask: Ask) -> Outcome:
    outcome = Outcome(question=q.question, reference=q.reference, expected_sources=list(q.sources),
                      expected_refusal=q.refuse)
    started = time.perf_counter()
    try:
        answer = await ask(q)
    except Exception as exc:  # any failure of the gateway or the network is a scored error
        outcome.error = f"{type(exc).__name__}: {exc}"[:500]
    else:
        outcome.answer = answer.text
        outcome.refused = answer.finish_reason == "content_filter"
        outcome.retrieved_sources = [str(c.get("source")) for c in answer.citations if c.get("source")]
        outcome.context = [str(c["text"]) for c in answer.citations if c.get("text")]
    outcome.latency_ms = (time.perf_counter() - started) * 1000
    return outcome


async def _score(o: Outcome, *, embedder: Embedder, context_source: ContextSource | None) -> None:
    answered = o.error is None and not o.refused
    if o.expected_sources and o.error is None and not o.expected_refusal:
        rr = m.reciprocal_rank(o.retrieved_sources, o.expected_sources)
        o.reciprocal_rank, o.hit = rr, float(rr > 0)
    if o.reference is not None and not o.expected_refusal:
        if answered:
            o.token_f1 = m.token_f1(o.answer, o.reference)
            [a, r] = await embedder.embed([o.answer or " ", o.reference])
            o.similarity = max(0.0, m.cosine(a, r))
        elif o.error is not None or o.refused:
            o.token_f1, o.similarity = 0.0, 0.0
    if answered and o.answer.strip():
        context = o.context
        if not context and context_source is not None and o.retrieved_sources:
            context = await context_source(o.question)
        if context:
            o.groundedness = await groundedness(o.answer, context, embedder=embedder)


def aggregate(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """The evaluation metrics (EVAL_METRICS names) over scored outcomes; a metric no question
    applies to is left out."""
    values = {
        "retrieval_hit_rate": m.mean([o.hit for o in outcomes if o.hit is not None]),
        "retrieval_mrr": m.mean([o.reciprocal_rank for o in outcomes if o.reciprocal_rank is not None]),
        "answer_token_f1": m.mean([o.token_f1 for o in outcomes if o.token_f1 is not None]),
        "answer_similarity": m.mean([o.similarity for o in outcomes if o.similarity is not None]),
        "groundedness": m.mean([o.groundedness for o in outcomes if o.groundedness is not None]),
        "guardrail_accuracy": m.mean([float(o.refused == o.expected_refusal) for o in outcomes
                                      if o.error is None]),
        "latency_p50_ms": m.percentile([o.latency_ms for o in outcomes if o.error is None], 50),
        "latency_p95_ms": m.percentile([o.latency_ms for o in outcomes if o.error is None], 95),
        "error_rate": m.mean([float(o.error is not None) for o in outcomes]),
    }
    return {k: v for k, v in values.items() if not math.isnan(v)}


async def groundedness(answer: str, context: Sequence[str], *, embedder: Embedder) -> float | None:
    """Share of the answer's claim sentences supported by `context` (method: see `metrics`)."""
    sentences = m.answer_sentences(answer)
    if not sentences:
        return None
    words = {w for text in context for w in m.content_words(text)}
    unresolved = [s for s in sentences if not m.lexically_supported(s, words)]
    supported = len(sentences) - len(unresolved)
    if unresolved:
        context_sentences = [s for text in context for s in m.SENTENCE.split(text) if s.strip()]
        vectors = await embedder.embed(unresolved + context_sentences)
        claims, known = vectors[:len(unresolved)], vectors[len(unresolved):]
        supported += sum(1 for c in claims if known
                         and max(m.cosine(c, k) for k in known) >= m.SUPPORT_SIMILARITY)
    return supported / len(sentences)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    failures: list[str]


def check_thresholds(values: dict[str, float], thresholds: dict[str, Any]) -> Verdict:
    """Each threshold (`min`/`max`) against the metric; a metric that was not computed fails."""
    failures = []
    for name, bound in sorted(thresholds.items()):
        value = values.get(name)
        if value is None:
            failures.append(f"{name}: not computed (the dataset has no questions it applies to)")
            continue
        if bound.min is not None and value < bound.min:
            failures.append(f"{name}: {value:.4g} < min {bound.min:g}")
        if bound.max is not None and value > bound.max:
            failures.append(f"{name}: {value:.4g} > max {bound.max:g}")
    return Verdict(passed=not failures, failures=failures)
