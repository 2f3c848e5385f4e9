"""Unknown fields get a hint by meaning before spelling: what the user typed, what they meant."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from aistack.api.manifests import ManifestError, parse_stack
from aistack.api.types import models_in
from aistack.api.v1alpha1 import AIStack
from aistack.api.v1alpha1.aliases import FIELD_ALIASES


def errors_for(model: dict[str, Any], **spec: Any) -> dict[str, str]:
    data = {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s"},
            "spec": {"model": model, **spec}}
    with pytest.raises(ManifestError) as info:
        parse_stack(data)
    return {e.path: e.message for e in info.value.errors}


VLLM = {"provider": "vllm", "name": "Qwen/Qwen2.5-7B-Instruct"}
OPENAI = {"provider": "openai", "name": "gpt-4o-mini",
          "openai": {"baseUrl": "https://api.openai.com/v1",
                     "apiKeySecretRef": {"name": "openai", "key": "k"}}}


def test_a_field_that_lives_elsewhere_is_named_by_its_full_path() -> None:
    """`vllm.model` was answered "did you mean 'maxModelLen'?" (closest spelling)."""
    errors = errors_for({**VLLM, "vllm": {"model": "Qwen/Qwen2.5-14B-Instruct"}})
    assert errors == {"spec.model.vllm.model": "unknown field; did you mean spec.model.name? "
                                               "it is set there, not under spec.model.vllm"}


@pytest.mark.parametrize(("model", "path", "hint"), [
    ({**VLLM, "vllm": {"tag": "v0.11.0"}}, "spec.model.vllm.tag", "did you mean 'image'?"),
    ({**VLLM, "vllm": {"gpus": 2}}, "spec.model.vllm.gpus",
     "did you mean 'gpu.count' (spec.model.vllm.gpu.count)?"),
    ({**VLLM, "vllm": {"replica_count": 2}}, "spec.model.vllm.replica_count", "did you mean 'replicas'?"),
    ({**OPENAI, "baseURL": "https://x/v1"}, "spec.model.baseURL",
     "did you mean 'openai.baseUrl' (spec.model.openai.baseUrl)?"),
    ({**OPENAI, "base_url": "https://x/v1"}, "spec.model.base_url",
     "did you mean 'openai.baseUrl' (spec.model.openai.baseUrl)?"),
    ({**VLLM, "max_model_len": 8192}, "spec.model.max_model_len",
     "did you mean 'vllm.maxModelLen' (spec.model.vllm.maxModelLen)?"),
])
def test_common_words_point_to_the_field_meant(model: dict[str, Any], path: str, hint: str) -> None:
    assert errors_for(model)[path] == f"unknown field; {hint}"


@pytest.mark.parametrize(("typed", "meant"), [
    ("tensor_parallel_size", "tensorParallelSize"),
    ("max-model-len", "maxModelLen"),
    ("GpuMemoryUtilization", "gpuMemoryUtilization"),
])
def test_another_casing_of_a_real_field_is_refused_with_its_camel_case(typed: str, meant: str) -> None:
    """The CRD knows camelCase only: the API server would drop `tensor_parallel_size`, which the
    models' Python names used to accept, so `aistack validate` passed a field the cluster ignores."""
    errors = errors_for({**VLLM, "vllm": {typed: 2}})
    assert errors == {
        f"spec.model.vllm.{typed}": f"unknown field; did you mean {meant!r}? (fields are camelCase)"}


def test_spelling_still_decides_when_no_meaning_matches() -> None:
    errors = errors_for({**VLLM, "vllm": {"tensorParallelSise": 2}})
    assert errors == {
        "spec.model.vllm.tensorParallelSise": "unknown field; did you mean 'tensorParallelSize'?"}


def test_list_items_are_looked_up_without_their_index() -> None:
    errors = errors_for(VLLM, retrieval={"embedder": {"model": "BAAI/bge-small-en-v1.5", "dim": 384}})
    assert errors["spec.retrieval.embedder.dim"] == "unknown field; did you mean 'dimension'?"


def _fields(path: list[str]) -> set[str]:
    """The wire names of the fields under a dotted path of AIStack (list items see-through)."""
    model: type[BaseModel] = AIStack
    for part in path:
        field = next(f for n, f in model.model_fields.items() if part in (n, f.alias))
        (model,) = models_in(field.annotation)
    return {f.alias or n for n, f in model.model_fields.items()}


@pytest.mark.parametrize("parent", sorted(FIELD_ALIASES))
def test_every_alias_points_at_a_real_field_and_shadows_none(parent: str) -> None:
    here = parent.split(".")
    normal = {f.replace("_", "").lower() for f in _fields(here)}
    for typed, target in FIELD_ALIASES[parent].items():
        assert typed.lower() not in normal, f"{parent}.{typed} is a real field (or another casing of one)"
        path = target.split(".") if target.startswith("spec.") else here + target.split(".")
        assert path[-1] in _fields(path[:-1]), f"{parent}.{typed} -> {target}: no such field"


@pytest.mark.parametrize(("spec", "got"), [([{"model": OPENAI}], "a list"), ("model: x", "a string"),
                                          (None, "null")])
def test_a_spec_that_is_no_mapping_says_so(spec: Any, got: str) -> None:
    """Not `spec.spec: unknown field`, nor pydantic's 'instance of AIStackSpec'."""
    data = {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s"}, "spec": spec}
    with pytest.raises(ManifestError) as info:
        parse_stack(data)
    assert [(e.path, e.message) for e in info.value.errors] == [
        ("spec", f"expected a mapping of fields (stage, model, retrieval, orchestration, ...), got {got}")]


def test_a_layer_that_is_no_mapping_names_its_fields() -> None:
    assert errors_for([VLLM]) == {
        "spec.model": "expected a mapping of fields (provider, name, servedName, vllm, ...), got a list"}
