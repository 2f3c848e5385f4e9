"""Golden files: `aistack render` of each example, reviewed like code.

Regenerate after an intended change with `AISTACK_UPDATE_GOLDEN=1 pytest tests/unit/operator`
and review the diff; a mismatch otherwise fails with the first differing lines.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from aistack.cli.render import render_yaml

GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
VERSION = "0.0.0-golden"


@pytest.mark.parametrize("name", ["quickstart", "rag", "production", "lora", "canary"])
def test_render_matches_golden_file(name: str) -> None:
    rendered, warnings = render_yaml(EXAMPLES / f"{name}.yaml", version=VERSION)
    assert warnings == []  # every example's sources can be read in the cluster
    golden = GOLDEN / f"{name}.yaml"
    if os.environ.get("AISTACK_UPDATE_GOLDEN") == "1":
        golden.write_text(rendered, encoding="utf-8")
    expected = golden.read_text(encoding="utf-8")
    if rendered != expected:
        diff = "".join(list(difflib.unified_diff(expected.splitlines(True), rendered.splitlines(True),
                                                 "golden", "rendered"))[:60])
        pytest.fail(f"{golden.name} differs (AISTACK_UPDATE_GOLDEN=1 regenerates it):\n{diff}")
