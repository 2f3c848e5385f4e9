"""Reading documents into titled sections: Markdown, plain text, HTML and PDF.

Sections follow the document's own headings so chunks never straddle two topics. Parsing uses
well-kept libraries (markdown-it-py for Markdown structure, Beautiful Soup for HTML, pypdf
for PDF); a file they cannot read raises `DocumentError`, which ingestion reports and skips.
What the libraries say while they parse (pypdf repairing a damaged file logs and warns) is
collected on the document instead of reaching the terminal raw, so ingestion can report it
once, in its own words.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import PurePosixPath

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")


class DocumentError(ValueError):
    """A file that cannot be read as its type says; the message says why."""


@dataclass(frozen=True)
class Section:
    heading: str | None
    text: str


@dataclass
class Document:
    title: str
    sections: list[Section] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """What the parser warned about while reading (a damaged PDF it repaired), in its words."""

    @property
    def empty(self) -> bool:
        return not any(s.text.strip() for s in self.sections)


def parse_document(data: bytes, *, name: str) -> Document:
    """Parse `data` by the suffix of `name` (a path or an object key)."""
    with _library_output() as said:
        document = _parse(data, name=name)
    document.warnings = said
    return document


def warnings_note(document: Document, *, name: str) -> str:
    """The parser's warnings about `name`, said once in ingestion's words (the raw text means
    little to someone ingesting a folder)."""
    count = len(document.warnings)
    if PurePosixPath(name).suffix.lower() == ".pdf":
        return (f"damaged PDF, read after {count} repair(s) by the parser; re-export it if its text "
                "looks incomplete in answers")
    return f"read with {count} parser warning(s)"


def _parse(data: bytes, *, name: str) -> Document:
    suffix = PurePosixPath(name).suffix.lower()
    stem = PurePosixPath(name).stem
    if suffix == ".pdf":
        return _pdf(data, stem)
    text = _decode(data, name)
    if suffix in (".md", ".markdown"):
        return _markdown(text, stem)
    if suffix in (".html", ".htm"):
        return _html(text, stem)
    if suffix == ".txt":
        return Document(title=stem, sections=[Section(None, text)])
    raise DocumentError(
        f"unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED_SUFFIXES)}")


_LIBRARY_LOGGERS = ("pypdf",)
_NOT_ABOUT_THE_DOCUMENT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
_one_parse_at_a_time = threading.Lock()


class _Records(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


@contextmanager
def _library_output() -> Iterator[list[str]]:
    """Collect the parsers' `logging` records and `warnings` while a document is parsed.

    With no handler configured, Python's last-resort handler prints library records on
    stderr, so the library loggers stop propagating for the parse. Both the loggers and
    `warnings.catch_warnings` are process-wide, and overlapping captures would restore each
    other's state in the wrong order: parses take turns (ingestion reads one file at a time
    anyway), and a warning another thread raises meanwhile is collected here, not lost.
    """
    said: list[str] = []
    handler = _Records(said)
    loggers = [logging.getLogger(name) for name in _LIBRARY_LOGGERS]
    with _one_parse_at_a_time:
        propagate = [logger.propagate for logger in loggers]
        for logger in loggers:
            logger.propagate = False
            logger.addHandler(handler)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield said
            said.extend(str(w.message) for w in caught if not issubclass(w.category, _NOT_ABOUT_THE_DOCUMENT))
        finally:
            for logger, before in zip(loggers, propagate, strict=True):
                logger.removeHandler(handler)
                logger.propagate = before


def _decode(data: bytes, name: str) -> str:
    if b"\x00" in data[:8192]:
        raise DocumentError("binary content (NUL bytes) in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not UTF-8 text (byte {exc.start}): re-save it as UTF-8") from exc


def _markdown(text: str, stem: str) -> Document:
    from markdown_it import MarkdownIt

    lines = text.splitlines()
    tokens = MarkdownIt("commonmark").parse(text)
    headings: list[tuple[int, int, int, str]] = []  # (start line, end line, level, text)
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.map:
            inline = tokens[i + 1].content.strip()
            headings.append((token.map[0], token.map[1], int(token.tag[1]), inline))
    title = next((h[3] for h in headings if h[2] == 1), stem)
    sections: list[Section] = []
    cursor, heading = 0, None
    for start, end, _level, inline in headings:
        body = "\n".join(lines[cursor:start]).strip()
        if body:
            sections.append(Section(heading, body))
        cursor, heading = end, inline
    body = "\n".join(lines[cursor:]).strip()
    if body:
        sections.append(Section(heading, body))
    return Document(title=title, sections=sections)


_BLOCKS = ("p", "li", "pre", "blockquote", "td", "th", "dd", "dt", "figcaption", "caption")
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")


def _html(text: str, stem: str) -> Document:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "nav", "header", "footer", "svg"]):
        tag.decompose()
    title_tag = soup.find("title")
    h1 = soup.find("h1")
    title = (title_tag.get_text(" ", strip=True) if title_tag else "") or (h1.get_text(" ", strip=True) if h1
                                                                           else "") or stem
    root = soup.body or soup
    sections: list[Section] = []
    heading: str | None = None
    paragraphs: list[str] = []

    def flush() -> None:
        if paragraphs:
            sections.append(Section(heading, "\n\n".join(paragraphs)))
            paragraphs.clear()

    for element in root.find_all([*_HEADINGS, *_BLOCKS]):
        if element.find_parent([*_BLOCKS]):  # nested block: its text is in the outer one
            continue
        content = element.get_text("\n" if element.name == "pre" else " ", strip=element.name != "pre")
        content = content if element.name == "pre" else re.sub(r"\s+", " ", content)
        if element.name in _HEADINGS:
            flush()
            heading = content or None
        elif content.strip():
            paragraphs.append(f"- {content}" if element.name == "li" else content)
    flush()
    if not sections:  # no block markup: take the bare text
        bare = root.get_text("\n", strip=True)
        if bare:
            sections.append(Section(None, bare))
    return Document(title=title, sections=sections)


def _pdf(data: bytes, stem: str) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise DocumentError("encrypted PDF: decrypt it before ingesting")
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise DocumentError(f"unreadable PDF ({type(exc).__name__}: {exc})") from exc
    sections = [Section(f"page {n}", text) for n, text in enumerate(pages, start=1) if text]
    return Document(title=meta_title.strip() or stem, sections=sections)
