from __future__ import annotations

from pathlib import Path

import pytest

from aistack.runtime.ingestion.chunking import chunk_document
from aistack.runtime.ingestion.documents import Document, Section, parse_document
from aistack.runtime.retrieval.tokens import EstimatedMeter

ROOT = Path(__file__).parents[4]
METER = EstimatedMeter(limit=10_000)


def sentences(n: int, word: str) -> str:
    return " ".join(f"{word} sentence number {i} ends here." for i in range(n))


def test_short_sections_give_one_chunk_each_and_never_cross_headings() -> None:
    doc = Document(title="t", sections=[Section("A", "alpha text"), Section("B", "beta text")])
    chunks = chunk_document(doc, size=256, overlap=32, meter=METER)
    assert [c.text for c in chunks] == ["A\n\nalpha text", "B\n\nbeta text"]


def test_paragraphs_are_packed_whole_up_to_the_size() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 30 for i in range(6)]
    doc = Document(title="t", sections=[Section(None, "\n\n".join(paragraphs))])
    chunks = chunk_document(doc, size=100, overlap=0, meter=METER)
    assert all(METER.count(c.text) <= 100 for c in chunks)
    joined = "\n\n".join(c.text for c in chunks)
    assert all(p.strip() in joined for p in paragraphs)  # no paragraph was cut
    assert len(chunks) == 3


def test_long_paragraphs_split_at_sentences_with_overlap() -> None:
    text = sentences(40, "alpha")
    chunks = chunk_document(Document(title="t", sections=[Section("H", text)]), size=80, overlap=16,
                            meter=METER)
    assert len(chunks) > 5
    assert all(METER.count(c.text) <= 80 for c in chunks)
    assert all(c.text.startswith("H\n\n") for c in chunks)
    for previous, current in zip(chunks, chunks[1:], strict=False):
        body = current.text.removeprefix("H\n\n")
        lead = body.split(" alpha sentence number", 1)[0]
        assert lead and lead in previous.text  # the overlap repeats the end of the previous chunk
    first_sentences = [c.text.removeprefix("H\n\n") for c in chunks]
    assert all("alpha sentence number" in t for t in first_sentences)


def test_a_single_huge_word_run_is_still_cut_to_size() -> None:
    chunks = chunk_document(Document(title="t", sections=[Section(None, "x" * 2500)]), size=100, overlap=0,
                            meter=METER)
    assert all(METER.count(c.text) <= 100 for c in chunks)
    assert "".join(c.text for c in chunks) == "x" * 2500


def test_the_size_is_lowered_to_what_the_embedder_reads() -> None:
    chunks = chunk_document(Document(title="t", sections=[Section("H", sentences(80, "beta"))]),
                            size=4096, overlap=32, meter=EstimatedMeter(limit=120))
    assert len(chunks) > 1 and all(METER.count(c.text) <= 120 for c in chunks)


@pytest.fixture(scope="module")
def minilm_meter():
    from aistack.runtime.retrieval.embedders import LocalEmbedder

    return LocalEmbedder(model="sentence-transformers/all-MiniLM-L6-v2").token_meter


@pytest.mark.parametrize("path", ["README.md", "docs/api-reference.md", "docs/architecture.md",
                                  "deploy/gitops/README.md"])
def test_no_chunk_of_a_technical_document_is_longer_than_minilm_reads(minilm_meter, path) -> None:
    """all-MiniLM-L6-v2 reads 256 word-pieces, [CLS] and [SEP] included: 254 of text. What a chunk
    holds past that never reaches its vector (sentence-transformers truncates silently)."""
    assert minilm_meter.limit == 254
    document = parse_document((ROOT / path).read_bytes(), name=path)
    chunks = chunk_document(document, size=256, overlap=32, meter=minilm_meter)
    tokenizer = minilm_meter._tokenizer
    lengths = [len(tokenizer(c.text)["input_ids"]) for c in chunks]  # as the model encodes it
    assert max(lengths) <= 256, f"{sum(n > 256 for n in lengths)} of {len(chunks)} chunks are cut"
    assert sum(lengths) / len(lengths) > 128  # chunks are filled, not cut needlessly small
