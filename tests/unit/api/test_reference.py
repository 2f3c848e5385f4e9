"""The API reference in docs/ is generated from the models and kept in sync."""

from __future__ import annotations

from pathlib import Path

from aistack.api.reference import REFERENCE_FILE, build_reference
from aistack.api.v1alpha1.model import VllmSpec

ROOT = Path(__file__).resolve().parents[3]


def test_committed_reference_matches_the_models() -> None:
    committed = (ROOT / "docs" / REFERENCE_FILE).read_text()
    assert committed == build_reference() + "\n", (
        "docs/api-reference.md is out of date: run `python -m aistack.api` and commit docs/"
    )


def test_reference_documents_every_field_of_a_layer() -> None:
    text = build_reference()
    section = text.split("## VllmSpec", 1)[1].split("\n## ", 1)[0]
    for field in VllmSpec.model_fields.values():
        assert f"| `{field.alias}` |" in section
    assert "| `gpuMemoryUtilization` | float | `0.9` |" in section
