"""The ingestion pipeline on the embedded store: files the listing refused are reported and never
written; a large file says how far it has got while it is embedded."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aistack.api.collection import CollectionSpec
from aistack.api.v1alpha1.retrieval import Chunking
from aistack.runtime.ingestion.pipeline import EMBED_BATCH_CHUNKS, LARGE_FILE_BYTES, Ingestor
from aistack.runtime.ingestion.sources import Target
from aistack.runtime.retrieval.edge import EdgeStore
from aistack.testing.gateway import HashEmbedder


def run(tmp_path: Path, docs: Path, *, max_file_bytes: int | None = None):
    store = EdgeStore(spec=CollectionSpec(name="kb", dimension=8), path=tmp_path / "store")
    done: list[tuple[str, str]] = []
    working: list[tuple[str, str]] = []
    ingestor = Ingestor(store=store, embedder=HashEmbedder(), chunking=Chunking(size=40, overlap=4),
                        base=docs.parent, max_file_bytes=max_file_bytes,
                        on_progress=lambda s, status: done.append((s, status)),
                        on_working=lambda s, text: working.append((s, text)))

    async def go():
        try:
            report = await ingestor.ingest(ingestor.list([Target(uri=str(docs))]))
            return report, {r.source for r in await store.documents()}
        finally:
            await store.close()

    report, stored = asyncio.run(go())
    return report, stored, done, working


def test_refused_files_are_errors_with_their_reason_and_nothing_of_them_is_stored(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.md").write_text("# OK\n\nfine text\n")
    (docs / "big.txt").write_text("word " * 1000)
    outside = tmp_path / "secret.txt"
    outside.write_text("root:x:0:0\n")
    (docs / "link.txt").symlink_to(outside)
    report, stored, done, _ = run(tmp_path, docs, max_file_bytes=1000)
    assert stored == {"docs/ok.md"}
    reasons = dict(report.errors)
    assert set(reasons) == {"docs/big.txt", "docs/link.txt"}
    assert reasons["docs/big.txt"].startswith("4.9 KiB is over the 1000 B limit per file")
    assert "outside the source folder" in reasons["docs/link.txt"]
    assert ("docs/big.txt", "skipped") in done and ("docs/link.txt", "skipped") in done
    assert report.files == 1 and report.new == 1


def test_a_large_file_reports_its_reading_and_each_tenth_of_its_embedding(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    paragraph = "Qdrant keeps the vectors of every chunk on disk and in memory. " * 3
    copies = LARGE_FILE_BYTES // len(paragraph) + 1
    (docs / "huge.txt").write_text("\n\n".join(paragraph for _ in range(copies)))
    (docs / "small.md").write_text("# Small\n\nshort\n")
    report, stored, done, working = run(tmp_path, docs)
    assert stored == {"docs/huge.txt", "docs/small.md"} and not report.errors
    huge = [text for source, text in working if source == "docs/huge.txt"]
    assert huge[0] == "reading 1.0 MiB"
    embedded = [tuple(int(n) for n in text.removeprefix("embedded ").removesuffix(" chunks").split(" of "))
                for text in huge[1:]]
    total = embedded[-1][1]
    assert total > 10 * EMBED_BATCH_CHUNKS and embedded[-1][0] == total
    assert embedded[0][0] <= EMBED_BATCH_CHUNKS and 10 <= len(embedded) <= 11  # a line per tenth
    assert [n for n, _ in embedded] == sorted(n for n, _ in embedded)
    assert all(source != "docs/small.md" for source, _ in working)
