"""The one YAML writer: strings any common reader would take for a bool or a number are quoted,
and what PyYAML already wrote right stays byte for byte (config files are hashed into pods)."""

from __future__ import annotations

import pytest
import yaml

from aistack.api import yamlio

YAML11_BOOLS = ["y", "Y", "n", "N", "yes", "No", "on", "OFF", "true", "False"]
YAML12_NUMBERS = ["1e3", "1E+3", "-2e-5", "0o17", "0755", "0x1F", "1.5", ".5", "12", "+1"]


@pytest.mark.parametrize("value", YAML11_BOOLS + YAML12_NUMBERS)
def test_ambiguous_strings_are_single_quoted_and_read_back_as_strings(value: str) -> None:
    text = yamlio.dump({"v": value})
    assert text == f"v: '{value}'\n"
    assert yaml.safe_load(text) == {"v": value}


@pytest.mark.parametrize("data", [
    {"b": "plain", "a": ["x", 1, 2.5, True, None], "c": {"d": "null", "e": "~", "f": ""}},
    {"config.yaml": "model: m\nport: 8080\n", "unicode": "caf\u00e9"},
])
def test_output_is_pyyaml_s_where_pyyaml_was_already_right(data: dict[str, object]) -> None:
    assert yamlio.dump(data) == yaml.safe_dump(data, sort_keys=False, width=100, allow_unicode=True)
    assert yamlio.dump(data, sort_keys=True) == yaml.safe_dump(data, sort_keys=True, width=100,
                                                               allow_unicode=True)


def test_blocks_write_multi_line_strings_as_literals() -> None:
    text = yamlio.dump_all([{"data": {"config.yaml": "a: 1\nb: 'on'\n"}}, {"k": "y"}], blocks=True)
    assert text == "data:\n  config.yaml: |\n    a: 1\n    b: 'on'\n---\nk: 'y'\n"
    assert list(yaml.safe_load_all(text)) == [{"data": {"config.yaml": "a: 1\nb: 'on'\n"}}, {"k": "y"}]
