"""Extractive answers: candidates are real sentences of the passages, and only they are accepted."""

from __future__ import annotations

import pytest

from aistack.runtime.orchestration import extractive
from aistack.runtime.retrieval.contracts import Passage

INGESTION = (
    "# Ingestion\n\n"
    "Ingestion reads files, splits them into chunks and embeds each chunk. "
    "Unchanged files are skipped by their hash.\n"
    "- Files deleted from a folder keep their chunks until you run ingest with `--prune`.\n"
    "```bash\naistack ingest stack.yaml --prune\n```\n"
    "Short one.\n"
)


def passage(text: str, source: str = "docs/ingestion.md", score: float = 0.9) -> Passage:
    return Passage(text=text, source=source, score=score)


def test_sentences_split_at_ends_and_lines_without_markers_or_code() -> None:
    assert extractive.sentences(INGESTION) == [
        "Ingestion",
        "Ingestion reads files, splits them into chunks and embeds each chunk.",
        "Unchanged files are skipped by their hash.",
        "Files deleted from a folder keep their chunks until you run ingest with `--prune`.",
        "Short one.",
    ]


def test_candidates_keep_sentences_verbatim_with_their_citation_best_passage_first() -> None:
    other = passage("The operator reconciles an AIStack into Deployments and Services.", "docs/operator.txt")
    found = extractive.candidates([passage(INGESTION), other])
    assert [c.citation for c in found] == [1, 1, 1, 2]
    assert found[
        2].text == "Files deleted from a folder keep their chunks until you run ingest with `--prune`."
    for c in found:
        assert c.text in (INGESTION if c.citation == 1 else other.text)
        assert extractive.MIN_CHARS <= len(c.text) <= extractive.MAX_CHARS


def test_candidates_are_distinct_and_bounded() -> None:
    text = " ".join(f"Sentence number {i} is long enough to count." for i in range(50))
    found = extractive.candidates([passage(text), passage(text)])
    assert len(found) == extractive.MAX_CANDIDATES
    assert len({c.text for c in found}) == len(found)


def test_request_constrains_the_engine_to_the_candidates_greedily() -> None:
    found = extractive.candidates([passage(INGESTION)])
    body = extractive.request([{"role": "system", "content": "Cite sources as [n]."},
                               {"role": "user", "content": "Context: ... Question: how?"}], found,
                              max_tokens=0)
    assert body["messages"][0] == {"role": "system", "content": extractive.INSTRUCTION}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["structured_outputs"] == {"choice": [c.text for c in found]}
    assert body["temperature"] == 0.0
    assert body["max_tokens"] >= max(len(c.text) for c in found) // 2


def test_answer_is_the_choice_with_its_citation_and_nothing_else() -> None:
    found = extractive.candidates([passage("An unrelated sentence that is long enough."), passage(INGESTION)])
    chosen = "Files deleted from a folder keep their chunks until you run ingest with `--prune`."
    assert extractive.answer(f" {chosen}\n", found) == f"{chosen} [2]"
    assert "quoted" in extractive.notice("m")


def test_answer_refuses_text_that_is_not_a_candidate() -> None:
    found = extractive.candidates([passage(INGESTION)])
    with pytest.raises(ValueError, match="not one of the 3 sentences"):
        extractive.answer("npm run clean --prune /path/to", found)


def test_shortlist_keeps_the_candidates_closest_to_the_question_closest_first() -> None:
    found = [extractive.Candidate(f"Sentence {i} that is long enough to be kept.", 1) for i in range(6)]
    vectors = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0], [0.8, 0.6], [0.0, 0.0]]
    kept = extractive.shortlist(found, question=[0.0, 2.0], vectors=vectors, keep=3, margin=1.0)
    assert kept == [found[1], found[2], found[4]]
    assert extractive.shortlist(found, question=[0.0, 2.0], vectors=vectors, keep=3, margin=0.25) == [
        found[1], found[2]]  # cosine 1.0 and 0.8; 0.6 is further than the margin from the best
    assert extractive.shortlist(found, question=[0.0, 2.0], vectors=vectors, keep=1) == [found[1]]


def test_a_paragraphs_wrapped_lines_are_one_sentence_and_list_items_are_their_own() -> None:
    text = ("When no model endpoint is reachable, `aistack up` serves a small\n"
            "built-in offline model, labelled as such.\n"
            "- a list item that\n  wraps onto a second line.\n"
            "- another item.\n\nA new paragraph.")
    assert extractive.sentences(text) == [
        ("When no model endpoint is reachable, `aistack up` serves a small built-in offline model, "
         "labelled as such."),
        "a list item that wraps onto a second line.", "another item.", "A new paragraph."]
