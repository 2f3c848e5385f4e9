"""Every child the operator writes fits the API server's limits (annotations 256 KiB in all, an
object 1 MiB, a ConfigMap's data 1 MiB) for a spec at its fields' limits; a spec too big to
render is refused in validation, naming its largest fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from aistack.api.manifests import ManifestError, parse_stack
from aistack.operator.apply import with_last_applied
from aistack.operator.render import render

EXAMPLES = Path(__file__).parents[3] / "examples"
ANNOTATIONS_LIMIT = 256 * 1024
OBJECT_LIMIT = 1024 * 1024
CONFIGMAP_DATA_LIMIT = 1024 * 1024


def at_the_limits() -> dict[str, Any]:
    """production.yaml with systemPrompt and promptTemplate near their maximum (100,000), a
    20,000-character policy and 200 blocked terms of 200 characters."""
    doc = yaml.safe_load((EXAMPLES / "production.yaml").read_text(encoding="utf-8"))
    spec = doc["spec"]
    spec["orchestration"]["systemPrompt"] = ("You are a careful assistant; cite sources. " * 2400)[:99_990]
    spec["orchestration"]["promptTemplate"] = ("Context:\n{context}\n\nQuestion: {question}\n"
                                               + "Answer only from the context. " * 3400)[:99_990]
    spec["guardrails"]["policy"] = ("Refuse anything unsafe or off-topic. " * 600)[:20_000]
    spec["guardrails"]["blockedTerms"] = [f"term-{i:03d}-" + "x" * 191 for i in range(200)]
    return doc


def sizes(child: dict[str, Any]) -> tuple[int, int, int]:
    """(annotations, object, ConfigMap data) in bytes, as the operator writes the child."""
    body = with_last_applied(child)
    annotations = sum(len(k.encode()) + len(v.encode()) for k, v in body["metadata"]["annotations"].items())
    data = sum(len(k.encode()) + len(v.encode()) for k, v in (body.get("data") or {}).items())
    return annotations, len(json.dumps(body, ensure_ascii=False).encode()), data


@pytest.mark.parametrize("example", ["at-the-limits", "production", "rag", "quickstart"])
def test_every_child_fits_the_api_servers_limits(example: str) -> None:
    doc = at_the_limits() if example == "at-the-limits" else yaml.safe_load(
        (EXAMPLES / f"{example}.yaml").read_text(encoding="utf-8"))
    rendered = render(parse_stack(doc, source=example), version="0.0.0")
    for child in rendered.manifests:
        annotations, size, data = sizes(child)
        name = f"{child['kind']} {child['metadata']['name']}"
        assert annotations <= ANNOTATIONS_LIMIT, f"{name}: annotations {annotations} bytes"
        assert size <= OBJECT_LIMIT, f"{name}: {size} bytes"
        assert data <= CONFIGMAP_DATA_LIMIT, f"{name}: data {data} bytes"


def test_a_spec_too_big_to_render_is_refused_naming_its_largest_field() -> None:
    doc = at_the_limits()
    doc["spec"]["guardrails"]["blockedTerms"] = [f"term-{i:04d}-" + "x" * 190 for i in range(2000)]
    with pytest.raises(ManifestError) as err:
        parse_stack(doc, source="big")
    message = str(err.value)
    assert "spec.guardrails.blockedTerms" in message and "over the 512 KiB" in message
    assert "spec.orchestration.systemPrompt (97 KiB)" in message
