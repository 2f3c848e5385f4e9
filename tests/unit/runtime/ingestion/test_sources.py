"""Listing sources: confined to the source folder, files over the size cap left unread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aistack.runtime.ingestion.sources import Target, format_size, list_target


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "etc" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    return secret


def _names(listing) -> list[str]:
    return [f.source for f in listing.files]


def test_a_link_out_of_the_source_folder_is_skipped_with_a_reason_and_never_read(tmp_path: Path,
                                                                                 outside: Path) -> None:
    docs = tmp_path / "project" / "docs"
    docs.mkdir(parents=True)
    (docs / "guide.md").write_text("# Guide\n")
    (docs / "passwd.txt").symlink_to(outside)
    (docs / "relative.md").symlink_to(Path("..") / ".." / "etc" / "passwd")
    (tmp_path / "project" / "notes.md").write_text("beside the source, not in it\n")
    (docs / "sibling.md").symlink_to(Path("..") / "notes.md")
    (docs / "etc").symlink_to(outside.parent, target_is_directory=True)
    listing = list_target(Target(uri="docs"), base=tmp_path / "project")
    assert listing.error is None
    assert _names(listing) == ["docs/guide.md"]
    skipped = dict(listing.skipped)
    assert set(skipped) == {"docs/passwd.txt", "docs/relative.md", "docs/sibling.md", "docs/etc"}
    assert skipped["docs/passwd.txt"] == (f"a symlink to {outside}, outside the source folder {docs}: "
                                          "not followed")
    assert str(tmp_path / "project" / "notes.md") in skipped["docs/sibling.md"]
    assert [f.read() for f in listing.files] == [b"# Guide\n"]


def test_a_file_named_as_the_source_may_not_be_a_link_out_of_its_folder(tmp_path: Path,
                                                                        outside: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "passwd.txt").symlink_to(outside)
    listing = list_target(Target(uri="docs/passwd.txt"), base=tmp_path)
    assert listing.files == [] and [s for s, _ in listing.skipped] == ["docs/passwd.txt"]


def test_links_inside_the_folder_are_read_as_a_mounted_configmap_needs(tmp_path: Path, outside: Path) -> None:
    """The kubelet's atomic-writer layout: each key a link into `..data`, a link to a hidden,
    timestamped folder; one key pointing out of the volume is still refused."""
    mounted = tmp_path / "sources" / "docs"
    revision = mounted / "..2026_12_05_10_00_00.000000001"
    revision.mkdir(parents=True)
    (revision / "a.md").write_text("# A\n")
    (revision / "b.txt").write_text("B\n")
    (mounted / "..data").symlink_to(revision.name)
    for name in ("a.md", "b.txt"):
        (mounted / name).symlink_to(Path("..data") / name)
    (revision / "evil.txt").symlink_to(outside)
    (mounted / "evil.txt").symlink_to(Path("..data") / "evil.txt")
    listing = list_target(Target(uri="docs"), base=tmp_path / "sources")
    assert _names(listing) == ["docs/a.md", "docs/b.txt"]
    assert [f.read() for f in listing.files] == [b"# A\n", b"B\n"]
    assert [s for s, _ in listing.skipped] == ["docs/evil.txt"]


def test_a_link_repointed_after_the_listing_is_not_read(tmp_path: Path, outside: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "inside.md").write_text("fine\n")
    (docs / "late.md").symlink_to("inside.md")
    listing = list_target(Target(uri="docs"), base=tmp_path)
    late = next(f for f in listing.files if f.source == "docs/late.md")
    (docs / "late.md").unlink()
    (docs / "late.md").symlink_to(outside)
    with pytest.raises(OSError, match="outside the source folder"):
        late.read()


def test_files_over_the_size_cap_are_skipped_unread_with_their_size(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "small.md").write_text("# Small\n")
    (docs / "big.txt").write_bytes(b"x" * (3 * 1024 * 1024 + 1))
    listing = list_target(Target(uri="docs"), base=tmp_path, max_bytes=2 * 1024 * 1024)
    assert _names(listing) == ["docs/small.md"] and listing.files[0].size == 8
    assert listing.skipped == [("docs/big.txt", ("3.0 MiB is over the 2.0 MiB limit per file "
                                                 "(retrieval.maxFileSize, or --max-file-size): not read"))]
    assert _names(list_target(Target(uri="docs"), base=tmp_path)) == ["docs/big.txt", "docs/small.md"]


def test_sizes_read_as_people_write_them() -> None:
    assert [format_size(n) for n in (0, 1023, 1024, 16 * 2 ** 20, 5 * 2 ** 30)] == [
        "0 B", "1023 B", "1.0 KiB", "16.0 MiB", "5.0 GiB"]


def test_a_dangling_link_inside_is_listed_and_fails_when_read(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "gone.md").symlink_to("nowhere.md")
    listing = list_target(Target(uri="docs"), base=tmp_path)
    assert _names(listing) == ["docs/gone.md"] and listing.skipped == []
    with pytest.raises(OSError):
        listing.files[0].read()
    assert not os.path.exists(docs / "nowhere.md")
