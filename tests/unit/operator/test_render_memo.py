"""`RenderMemo`: one validation and render per unchanged stack document, bounded in size."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from aistack.api.manifests import ManifestError
from aistack.operator.reconcile import RenderMemo, parse_and_render, stack_document

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def document(name: str = "shop", **spec: Any) -> dict[str, Any]:
    doc = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text(encoding="utf-8"))
    doc["metadata"].update(name=name, namespace="apps", uid=f"uid-{name}", generation=1)
    doc["spec"].update(spec)
    return stack_document(doc)


def test_an_unchanged_document_is_rendered_once_and_gives_what_a_fresh_render_gives() -> None:
    memo = RenderMemo()
    rendered = memo(document(), "1.0")
    again = memo(copy.deepcopy(document()), "1.0")
    assert (memo.misses, memo.hits) == (1, 1)
    assert again is rendered
    assert rendered == parse_and_render(document(), "1.0")


def test_a_changed_spec_or_version_is_rendered_again() -> None:
    memo = RenderMemo()
    first = memo(document(), "1.0").manifests
    doc = document()
    doc["metadata"]["generation"] = 2
    doc["spec"]["orchestration"] = {**doc["spec"].get("orchestration", {}), "promptTemplate": "Q: {question}"}
    changed = memo(doc, "1.0").manifests
    other_version = memo(doc, "2.0").manifests
    assert memo.misses == 3 and memo.hits == 0
    assert changed != first and other_version != changed


def test_the_memo_keeps_only_the_stacks_used_last() -> None:
    memo = RenderMemo(size=2)
    for name in ("a", "b", "c"):
        memo(document(name), "1.0")
    assert list(memo.entries) == [("apps", "b"), ("apps", "c")]
    memo(document("a"), "1.0")
    assert memo.misses == 4
    memo.forget(("apps", "a"))
    assert ("apps", "a") not in memo.entries


def test_an_invalid_spec_raises_every_time_and_is_not_kept() -> None:
    memo = RenderMemo()
    bad = document(compute={"replicas": "many"})
    for _ in range(2):
        with pytest.raises(ManifestError):
            memo(bad, "1.0")
    assert memo.entries == {} and memo.misses == 2
