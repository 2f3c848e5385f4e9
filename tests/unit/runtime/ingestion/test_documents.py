from __future__ import annotations

import logging
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

from aistack.runtime.ingestion.documents import DocumentError, Section, parse_document, warnings_note
from aistack.testing.documents import make_damaged_pdf, make_pdf

MARKDOWN = """# Guide

Intro paragraph.

## Install

Run pip.

```bash
# not a heading, a shell comment
pip install aistack
```

## Use
Ask a question.
"""


def test_markdown_sections_follow_headings_and_ignore_hashes_in_code() -> None:
    doc = parse_document(MARKDOWN.encode(), name="docs/guide.md")
    assert doc.title == "Guide"
    assert [s.heading for s in doc.sections] == ["Guide", "Install", "Use"]
    assert "# not a heading" in doc.sections[1].text
    assert doc.sections[2] == Section("Use", "Ask a question.")


def test_markdown_without_h1_is_titled_by_file_name() -> None:
    assert parse_document(b"just text", name="notes/release-notes.md").title == "release-notes"


def test_html_keeps_headings_and_paragraphs_and_drops_scripts_and_navigation() -> None:
    html = b"""<html><head><title>Ops manual</title><script>var secret = 1;</script></head>
    <body><nav>Home | About</nav><h1>Ops</h1><p>Start  the
    gateway.</p><div><h2>Backups</h2><ul><li>Snapshot <b>daily</b></li><li>Keep 7</li></ul></div>
    <pre>aistack up
  --state x</pre></body></html>"""
    doc = parse_document(html, name="ops.html")
    assert doc.title == "Ops manual"
    assert doc.sections[0] == Section("Ops", "Start the gateway.")
    assert doc.sections[1].heading == "Backups"
    assert "- Snapshot daily\n\n- Keep 7" in doc.sections[1].text
    assert "aistack up\n  --state x" in doc.sections[1].text
    text = " ".join(s.text for s in doc.sections)
    assert "secret" not in text and "Home" not in text


def test_pdf_pages_become_sections(pdf_bytes: bytes) -> None:
    doc = parse_document(pdf_bytes, name="s3://b/guide.pdf")
    assert doc.title == "Stack guide"
    assert [s.heading for s in doc.sections] == ["page 1", "page 2"]
    assert "Qdrant keeps the vectors." in doc.sections[0].text


@pytest.mark.parametrize(("data", "name", "reason"), [
    (b"%PDF-1.4\n this is not a pdf at all", "broken.pdf", "unreadable PDF"),
    (b"\x00\x01\x02binary", "image.md", "binary content"),
    (b"caf\xe9 latin-1", "legacy.txt", "not UTF-8"),
    (b"a,b\n1,2", "table.csv", "unsupported file type .csv"),
])
def test_unreadable_files_raise_document_error_with_a_reason(data: bytes, name: str, reason: str) -> None:
    with pytest.raises(DocumentError, match=reason):
        parse_document(data, name=name)


def test_truncated_pdf_is_reported(pdf_bytes: bytes) -> None:
    with pytest.raises(DocumentError):
        doc = parse_document(pdf_bytes[: len(pdf_bytes) // 3], name="cut.pdf")
        if doc.empty:  # pypdf may recover nothing without raising: that is still not a document
            raise DocumentError("no text")


def test_a_damaged_pdf_is_read_and_its_repairs_are_kept_on_the_document(
        caplog: pytest.LogCaptureFixture) -> None:
    doc = parse_document(make_damaged_pdf(["Qdrant keeps the vectors."], title="Guide"),
                         name="docs/guide.pdf")
    assert doc.title == "Guide" and "Qdrant keeps the vectors." in doc.sections[0].text
    assert any("wrong pointing object" in w for w in doc.warnings)  # pypdf's words, kept for the report
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]  # nothing reached the handlers
    assert logging.getLogger("pypdf").propagate  # restored once the parse is over
    assert "damaged PDF, read after" in warnings_note(doc, name="docs/guide.pdf")


def test_a_library_warning_goes_on_the_document_not_to_the_warnings_module() -> None:
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        doc = parse_document(b"https://example.com/page", name="link.html")  # bs4: "looks more like a URL"
    assert not escaped
    assert len(doc.warnings) == 1 and "URL" in doc.warnings[0]
    assert warnings_note(doc, name="link.html") == "read with 1 parser warning(s)"


def test_a_clean_document_has_no_warnings(pdf_bytes: bytes) -> None:
    assert parse_document(pdf_bytes, name="guide.pdf").warnings == []
    assert parse_document(MARKDOWN.encode(), name="guide.md").warnings == []


def test_parses_in_several_threads_each_keep_their_own_warnings_and_leave_logging_and_warnings_as_they_were(
) -> None:
    damaged = make_damaged_pdf(["a damaged page"])
    with ThreadPoolExecutor(4) as pool:
        docs = list(pool.map(lambda n: parse_document(damaged if n % 2 else make_pdf(["clean"]),
                                                      name=f"{n}.pdf"),
                             range(8)))
    assert [bool(d.warnings) for d in docs] == [n % 2 == 1 for n in range(8)]
    assert logging.getLogger("pypdf").propagate and not logging.getLogger("pypdf").handlers
    with warnings.catch_warnings(record=True) as seen:  # the warnings machinery still reports to its caller
        warnings.simplefilter("always")
        warnings.warn("after the parses", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["after the parses"]
