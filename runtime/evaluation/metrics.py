"""Evaluation metrics, pure and deterministic (no LLM judge).

- retrieval_hit_rate / retrieval_mrr: is an expected source among the retrieved ones, and at
  which rank. A retrieved source matches an expected one when equal or when it ends with
  `/<expected>` (datasets name `ingestion.md`, the store holds `docs/ingestion.md`).
- answer_token_f1: SQuAD-style token F1 (lower case, no punctuation or articles, and no
  citation markers like `[1]`).
- answer_similarity: cosine of the MiniLM embeddings of answer and reference.
- groundedness: the share of answer sentences supported by the retrieved context. A sentence
  is supported when at least half of its content words occur in the context, or when its
  embedding is within cosine 0.6 of some context sentence (paraphrase). Citation markers like
  `[1]` and sentences under three content words are ignored. Lexical support catches copied
  facts cheaply; the embedding test accepts rewording; neither can judge a wrong inference
  drawn from right facts, which needs an LLM judge (`evaluation.judge`, not offered yet).
- guardrail_accuracy: share of questions refused exactly when `refuse` says they should be.
- latency_p50_ms / latency_p95_ms: linear-interpolated percentiles of end-to-end latency.
- error_rate: share of questions whose request failed.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

ARTICLES = re.compile(r"\b(a|an|the)\b")
CITATION = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")
SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this "
    "that these those there here you your we our they their he she his her i me my do does did done can "
    "could will would should may might must not no yes so than then too very just also into over under "
    "about which who whom what when where why how all any each both few more most other some such only "
    "own same has have had".split()
)
SUPPORT_WORD_SHARE = 0.5
SUPPORT_SIMILARITY = 0.6


def normalize(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    return " ".join(ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize(CITATION.sub("", prediction)).split(), normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def source_matches(retrieved: str, expected: str) -> bool:
    return retrieved == expected or retrieved.endswith("/" + expected.lstrip("/"))


def reciprocal_rank(retrieved: Sequence[str], expected: Sequence[str]) -> float:
    """1/rank of the first retrieved source that is expected; 0 when none is."""
    for rank, source in enumerate(retrieved, start=1):
        if any(source_matches(source, e) for e in expected):
            return 1.0 / rank
    return 0.0


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    return dot / norm if norm else 0.0


def content_words(text: str) -> list[str]:
    return [w for w in normalize(CITATION.sub(" ", text)).split() if w not in STOPWORDS]


def answer_sentences(answer: str) -> list[str]:
    """The sentences of an answer that make a claim (three content words or more)."""
    out = []
    for sentence in SENTENCE.split(CITATION.sub("", answer)):
        sentence = sentence.strip()
        if len(content_words(sentence)) >= 3:
            out.append(sentence)
    return out


def lexically_supported(sentence: str, context_words: set[str]) -> bool:
    words = content_words(sentence)
    return bool(words) and sum(w in context_words for w in words) / len(words) >= SUPPORT_WORD_SHARE


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan
