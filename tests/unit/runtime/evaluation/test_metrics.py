from __future__ import annotations

import math
from pathlib import Path

import pytest

from aistack.api.v1alpha1.mlops import Threshold
from aistack.runtime.evaluation import metrics as m
from aistack.runtime.evaluation.dataset import DatasetError, load_dataset
from aistack.runtime.evaluation.runner import check_thresholds


def test_token_f1_is_squad_style() -> None:
    assert m.token_f1("The Qdrant store.", "qdrant store") == 1.0
    assert m.token_f1("qdrant keeps vectors", "qdrant stores vectors") == pytest.approx(2 / 3)
    assert m.token_f1("nothing alike", "qdrant") == 0.0
    assert m.token_f1("", "") == 1.0


def test_reciprocal_rank_matches_sources_by_suffix() -> None:
    assert m.reciprocal_rank(["docs/a.md", "docs/b.md"], ["b.md"]) == 0.5
    assert m.reciprocal_rank(["docs/a.md"], ["docs/a.md"]) == 1.0
    assert m.reciprocal_rank(["docs/ba.md"], ["a.md"]) == 0.0
    assert m.reciprocal_rank([], ["a.md"]) == 0.0


def test_percentiles_interpolate_like_numpy() -> None:
    assert m.percentile([10, 20, 30, 40], 50) == 25
    assert m.percentile([10, 20, 30, 40], 95) == pytest.approx(38.5)
    assert math.isnan(m.percentile([], 50))


def test_claim_sentences_ignore_citations_and_short_fillers() -> None:
    assert m.answer_sentences(
        "Qdrant stores vectors on disk [1]. Yes. It is so.") == ["Qdrant stores vectors on disk."]
    assert m.lexically_supported("Qdrant stores vectors", {"qdrant", "stores", "vectors"})
    assert not m.lexically_supported("Pinecone hosts embeddings remotely", {"qdrant", "vectors"})


def test_thresholds_fail_on_bounds_and_on_missing_metrics() -> None:
    verdict = check_thresholds({"answer_token_f1": 0.5, "latency_p95_ms": 900.0},
                               {"answer_token_f1": Threshold(min=0.6), "latency_p95_ms": Threshold(max=1000),
                                "retrieval_mrr": Threshold(min=0.1)})
    assert not verdict.passed
    assert verdict.failures == ["answer_token_f1: 0.5 < min 0.6",
                                ("retrieval_mrr: not computed (the dataset has no "
                                 "questions it applies to)")]
    assert check_thresholds({"error_rate": 0.0}, {"error_rate": Threshold(max=0.0)}).passed


@pytest.mark.parametrize(("content", "message"), [
    ('{"question": "ok"}\n{not json}\n', ":2: not JSON"),
    ('{"reference": "no question"}\n', ":1: question: Field required"),
    ('{"question": "q", "refuse": "maybe"}\n', ":1: refuse: Input should be a valid boolean"),
    ('{"question": "q", "answer": "typo"}\n', ":1: answer: Extra inputs are not permitted"),
    ('\n\n', "no questions"),
])
def test_bad_datasets_name_the_line_and_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_the_example_dataset_loads() -> None:
    questions = load_dataset(Path(__file__).resolve().parents[4] / "examples" / "eval.jsonl")
    assert len(questions) >= 8 and any(q.refuse for q in questions) and all(q.question for q in questions)
