"""Writing generated files (crds/, docs/api-reference.md, deploy/operator/, api/vllm_flags.py).

Each generator builds its files' text in memory (so its drift test can compare without writing)
and hands them here to be written, one line per file saying where.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def write_generated(files: Mapping[Path, str]) -> None:
    """Write each text to its path (creating the folder) and print `wrote PATH`."""
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
