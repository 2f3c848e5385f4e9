"""Include patterns match as in .gitignore: `*` stays in a folder, `**` spans folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from aistack.runtime.ingestion.globs import glob_match
from aistack.runtime.ingestion.sources import Target, list_target

CASES = [
    ("guides/*.md", "guides/a.md", True),
    ("guides/*.md", "guides/old/x.md", False),
    ("guides/**/*.md", "guides/old/x.md", True),
    ("guides/**/*.md", "guides/a.md", True),
    ("guides/**", "guides/old/deep/x.txt", True),
    ("**/*.md", "a.md", True),
    ("**/*.md", "x/y/z/a.md", True),
    ("*.md", "x/y/a.md", True),  # no slash: a name at any depth
    ("/guides/*.md", "guides/a.md", True),
    ("guides/*.md", "other/guides/a.md", False),  # a slash anchors at the source's folder
    ("guides/?.md", "guides/a.md", True),
    ("guides/?.md", "guides/ab.md", False),
    ("guides/[ab].md", "guides/b.md", True),
    ("guides/[!ab].md", "guides/b.md", False),
    ("*.md", "a.mdx", False),
    ("a+b(1).md", "a+b(1).md", True),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), CASES, ids=[f"{p}~{f}" for p, f, _ in CASES])
def test_patterns_match_as_gitignore_does(pattern: str, path: str, expected: bool) -> None:
    assert glob_match(path, pattern) is expected


def test_a_source_takes_only_what_its_patterns_name(tmp_path: Path) -> None:
    for name in ("guides/a.md", "guides/old/x.md", "guides/old/deep/y.md", "top.md"):
        (tmp_path / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / name).write_text("# t\n\ntext\n")

    def listed(*include: str) -> list[str]:
        listing = list_target(Target(uri="docs", include=include), base=tmp_path)
        return sorted(f.source.removeprefix("docs/") for f in listing.files)

    assert listed("guides/*.md") == ["guides/a.md"]
    assert listed("guides/**/*.md") == ["guides/a.md", "guides/old/deep/y.md", "guides/old/x.md"]
    assert listed("guides/old/*.md", "*.md") == ["guides/a.md", "guides/old/deep/y.md", "guides/old/x.md",
                                                 "top.md"]
    assert listed("/top.md") == ["top.md"]
