"""spec.model.vllm.adapters and lora: pydantic and the CRD's CEL rules refuse the same inputs, each
error names its field; the engine's flags come from `lora`, never from the adapter list."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from aistack.api.config_hash import config_hash
from aistack.api.engine import check_extra_args, server_args
from aistack.api.errors import field_errors
from aistack.api.v1alpha1 import AIStack
from aistack.testing.crd_rules import failed_cel_messages


def manifest(vllm: dict[str, Any], **model: Any) -> dict[str, Any]:
    return {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s"},
            "spec": {"model": {"provider": "vllm", "name": "Qwen/Qwen2.5-7B-Instruct", "vllm": vllm,
                               **model}}}


def pydantic_errors(doc: dict[str, Any]) -> list[str]:
    try:
        AIStack.model_validate(copy.deepcopy(doc))
    except ValidationError as err:
        return [str(e) for e in field_errors(err)]
    return []


def adapters(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "source": f"adapters/{n}"} for n in names]


@pytest.mark.parametrize(("vllm", "model"), [
    ({"adapters": [{"name": "sql", "source": "hf://acme/sql-lora@v2"},
                   {"name": "support.v1", "source": "s3://acme-adapters/support"},
                   {"name": "chat_2", "source": "adapters/chat-2", "rank": 16}]}, {}),
    ({"adapters": adapters(*"abcdefgh")}, {}),
    ({"lora": {"maxAdapters": 2, "maxAdaptersPerBatch": 2, "maxRank": 64},
      "adapters": [{"name": "a", "source": "a", "rank": 64}]}, {}),
    ({"lora": {}}, {}),
    ({"adapters": adapters("assistant")}, {"servedName": "chat"}),
])
def test_consistent_adapters_are_accepted_by_both(vllm: dict[str, Any], model: dict[str, Any]) -> None:
    doc = manifest(vllm, **model)
    assert pydantic_errors(doc) == []
    assert failed_cel_messages(doc) == []


@pytest.mark.parametrize(("vllm", "model", "field", "cel"), [
    ({"adapters": adapters("a", "b", "a")}, {}, "spec.model.vllm.adapters[2].name",
     "adapter names must be unique"),
    ({"adapters": adapters(*"abcdefghi")}, {}, "spec.model.vllm.adapters",
     "more adapters than lora.maxAdapters"),
    ({"lora": {"maxAdapters": 1}, "adapters": adapters("a", "b")}, {}, "spec.model.vllm.adapters",
     "more adapters than lora.maxAdapters"),
    ({"adapters": [{"name": "a", "source": "a", "rank": 32}]}, {}, "spec.model.vllm.adapters[0].rank",
     "rank is greater than lora.maxRank"),
    ({"lora": {"maxRank": 8}, "adapters": [{"name": "a", "source": "a", "rank": 16}]}, {},
     "spec.model.vllm.adapters[0].rank", "rank is greater than lora.maxRank"),
    ({"lora": {"maxAdapters": 2, "maxAdaptersPerBatch": 3}}, {}, "spec.model.vllm.lora.maxAdaptersPerBatch",
     "maxAdaptersPerBatch must not be greater than maxAdapters"),
    ({"adapters": adapters("Qwen2.5")}, {"servedName": "Qwen2.5"}, "spec.model.vllm.adapters[0].name",
     "must differ from the base model's served name"),
])
def test_contradictory_adapters_name_the_field_in_both(vllm: dict[str, Any], model: dict[str, Any],
                                                      field: str, cel: str) -> None:
    doc = manifest(vllm, **model)
    assert any(e.startswith(f"{field}:") for e in pydantic_errors(doc)), pydantic_errors(doc)
    assert any(cel in m for m in failed_cel_messages(doc)), failed_cel_messages(doc)


def test_an_adapter_named_as_the_base_repo_is_refused_by_both() -> None:
    """Without servedName the base is served under `name`, which may be a plain word."""
    doc = manifest({"adapters": adapters("tiny")})
    doc["spec"]["model"]["name"] = "tiny"
    assert any(e.startswith("spec.model.vllm.adapters[0].name: 'tiny' is the base model's served name")
               for e in pydantic_errors(doc))
    assert any("must differ from the base model's served name" in m for m in failed_cel_messages(doc))


def test_adapters_on_an_api_model_are_refused_by_both() -> None:
    doc = manifest({"adapters": adapters("sql")})
    doc["spec"]["model"].update(provider="openai", name="gpt-4o-mini",
                                openai={"baseUrl": "https://api.openai.com/v1",
                                        "apiKeySecretRef": {"name": "o", "key": "k"}})
    errors = pydantic_errors(doc)
    assert any(e.startswith("spec.model.vllm:") and "LoRA adapters need a self-hosted vLLM" in e
               for e in errors), errors
    assert any("adapter settings" in m for m in failed_cel_messages(doc))


@pytest.mark.parametrize("source", ["../x", "/model-cache/x", "a/../b", ".hidden/x", "hf://just-a-repo",
                                    "gs://bucket/x", "s3://B/x", "adapters/a b"])
def test_bad_sources_are_refused_with_what_is_accepted(source: str) -> None:
    errors = pydantic_errors(manifest({"adapters": [{"name": "a", "source": source}]}))
    assert any(e.startswith("spec.model.vllm.adapters[0].source:") and "hf://org/repo[@revision]" in e
               for e in errors), errors


@pytest.mark.parametrize("name", ["has/slash", "-lead", "trail-", "a b", "x" * 64])
def test_bad_names_are_refused(name: str) -> None:
    errors = pydantic_errors(manifest({"adapters": [{"name": name, "source": "a"}]}))
    assert any(e.startswith("spec.model.vllm.adapters[0].name:") for e in errors), errors


@pytest.mark.parametrize(("flag", "field"), [
    ("--enable-lora", "adapters"), ("--max-lora-rank", "lora.maxRank"),
    ("--max-loras", "lora.maxAdaptersPerBatch"), ("--max-cpu-loras", "lora.maxAdapters"),
    ("--lora-modules", "adapters"), ("--max_lora_rank", "lora.maxRank"),
])
def test_lora_flags_aistack_owns_are_refused_in_extra_args(flag: str, field: str) -> None:
    args = [flag] if flag == "--enable-lora" else [flag, "8" if "rank" in flag else "a=/x"]
    problems = check_extra_args(args)
    assert problems and problems[0][0] == 0 and f"set by aistack from {field}" in problems[0][1]


def flags(vllm: dict[str, Any]) -> list[str]:
    return server_args(AIStack.model_validate(manifest(vllm)).spec.model)


def test_engine_flags_come_from_lora_not_from_the_list() -> None:
    """Adding or removing an adapter leaves the engine's command line (the pod template) unchanged."""
    one, three = flags({"adapters": adapters("a")}), flags({"adapters": adapters("a", "b", "c")})
    assert one == three
    assert one[one.index("--enable-lora"):] == ["--enable-lora", "--max-lora-rank", "16",
                                                "--max-cpu-loras", "8", "--max-loras", "4"]
    assert "--lora-modules" not in one
    assert flags({"lora": {}}) == one  # LoRA kept on with no adapter: the first one restarts nothing
    assert "--enable-lora" not in flags({})


def test_adapters_are_behaviour_so_they_move_the_config_hash() -> None:
    def stack_hash(vllm: dict[str, Any]) -> str:
        return config_hash(AIStack.model_validate(manifest(vllm)).spec)

    plain = stack_hash({})
    one = stack_hash({"adapters": adapters("a")})
    assert len({plain, one, stack_hash({"adapters": adapters("a", "b")}),
                stack_hash({"adapters": [{"name": "a", "source": "hf://acme/a@v2"}]}),
                stack_hash({"adapters": adapters("a"), "lora": {"maxRank": 64}})}) == 5
    assert stack_hash({"adapters": adapters("a")}) == one
