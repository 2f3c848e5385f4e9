from __future__ import annotations

from aistack.runtime.ingestion.chunking import chunk_document
from aistack.runtime.ingestion.documents import Document, Section


def sentences(n: int, word: str) -> str:
    return " ".join(f"{word} sentence number {i} ends here." for i in range(n))


def test_short_sections_give_one_chunk_each_and_never_cross_headings() -> None:
    doc = Document(title="t", sections=[Section("A", "alpha text"), Section("B", "beta text")])
    chunks = chunk_document(doc, size=1000, overlap=100)
    assert [c.text for c in chunks] == ["A\n\nalpha text", "B\n\nbeta text"]


def test_paragraphs_are_packed_whole_up_to_the_size() -> None:
    paragraphs = [f"Paragraph {i}. " + "word " * 30 for i in range(6)]
    doc = Document(title="t", sections=[Section(None, "\n\n".join(paragraphs))])
    chunks = chunk_document(doc, size=400, overlap=0)
    assert all(len(c.text) <= 400 for c in chunks)
    joined = "\n\n".join(c.text for c in chunks)
    assert all(p.strip() in joined for p in paragraphs)  # no paragraph was cut
    assert len(chunks) == 3


def test_long_paragraphs_split_at_sentences_with_overlap() -> None:
    text = sentences(40, "alpha")
    chunks = chunk_document(Document(title="t", sections=[Section("H", text)]), size=300, overlap=60)
    assert len(chunks) > 5
    assert all(len(c.text) <= 300 for c in chunks)
    assert all(c.text.startswith("H\n\n") for c in chunks)
    for previous, current in zip(chunks, chunks[1:], strict=False):
        body = current.text.removeprefix("H\n\n")
        lead = body.split(" alpha sentence number", 1)[0]
        assert lead and lead in previous.text  # the overlap repeats the end of the previous chunk
    first_sentences = [c.text.removeprefix("H\n\n") for c in chunks]
    assert all("alpha sentence number" in t for t in first_sentences)


def test_a_single_huge_word_run_is_still_cut_to_size() -> None:
    chunks = chunk_document(Document(title="t", sections=[Section(None, "x" * 2500)]), size=1000, overlap=0)
    assert [len(c.text) for c in chunks] == [1000, 1000, 500]
