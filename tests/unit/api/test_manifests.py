"""The AIStack models: examples validate, each bad input class fails with its field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from aistack.api.manifests import ManifestError, load_documents, load_stack, parse_stack

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))


def expected_error(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <path>: <message>'"
    return first.removeprefix("# expect: ")


def test_there_are_three_examples_and_ten_plus_invalid_manifests() -> None:
    assert {p.name for p in EXAMPLES} >= {"quickstart.yaml", "rag.yaml", "production.yaml"}
    assert len(INVALID) >= 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path: Path) -> None:
    docs = load_documents(path)
    assert docs and all(not d.errors for d in docs), [str(e) for d in docs for e in d.errors]
    assert all(d.stack is not None for d in docs)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_manifest_fails_with_its_field_message(path: Path) -> None:
    docs = load_documents(path)
    errors = [str(e) for d in docs for e in d.errors]
    assert any(e.startswith(expected_error(path)) for e in errors), errors


def test_quickstart_is_phase_one_model_only() -> None:
    stack = load_stack(ROOT / "examples" / "quickstart.yaml")
    spec = stack.spec
    assert (spec.retrieval, spec.guardrails, spec.observability, spec.evaluation) == (None, None, None, None)
    assert spec.model.provider == "openai"


def test_production_declares_all_six_layers_on_vllm() -> None:
    spec = load_stack(ROOT / "examples" / "production.yaml").spec
    assert spec.model.provider == "vllm" and spec.model.vllm is not None
    assert spec.model.vllm.gpu.count >= 1
    assert spec.retrieval and spec.guardrails and spec.observability and spec.evaluation
    assert spec.orchestration.mode == "agent" and spec.orchestration.tools


def minimal(**spec: object) -> dict:
    base = {
        "model": {
            "provider": "openai",
            "name": "gpt-4o-mini",
            "openai": {"baseUrl": "https://api.openai.com/v1",
                       "apiKeySecretRef": {"name": "openai", "key": "k"}},
        }
    }
    return {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s"},
            "spec": {**base, **spec}}


def test_defaults_fill_a_vllm_model_and_derive_embedder_dimension() -> None:
    data = minimal(retrieval={"embedder": {"model": "BAAI/bge-base-en-v1.5"}})
    data["spec"]["model"] = {"provider": "vllm", "name": "Qwen/Qwen2.5-7B-Instruct"}
    stack = parse_stack(data)
    vllm = stack.spec.model.vllm
    assert vllm is not None and vllm.gpu.count == 1 and vllm.effective_tensor_parallel_size == 1
    assert stack.spec.retrieval is not None
    assert stack.spec.retrieval.embedder.dimension == 768
    assert stack.spec.retrieval.collection.deletion_policy == "Retain"
    assert stack.spec.retrieval.vector_store.managed is not None


def test_every_broken_rule_is_reported_not_only_the_first() -> None:
    data = minimal()
    data["spec"]["model"] = {
        "provider": "vllm",
        "name": "m/m",
        "vllm": {"gpu": {"count": 4}, "tensorParallelSize": 3, "extraArgs": ["--port=1"]},
    }
    with pytest.raises(ManifestError) as info:
        parse_stack(data)
    paths = {e.path for e in info.value.errors}
    assert paths == {"spec.model.vllm.tensorParallelSize", "spec.model.vllm.extraArgs[0]"}


@pytest.mark.parametrize(
    ("key", "value"),
    [("password", "hunter2"), ("hfToken", "abc"), ("api_key", "x"), ("secret", 123)],
)
def test_inline_secret_keys_are_refused_wherever_they_are(key: str, value: object) -> None:
    data = minimal()
    data["spec"]["model"]["openai"][key] = value
    with pytest.raises(ManifestError) as info:
        parse_stack(data)
    assert [e.path for e in info.value.errors] == [f"spec.model.openai.{key}"]
    assert "inline secrets are not accepted" in info.value.errors[0].message


def test_secret_refs_are_not_mistaken_for_inline_secrets() -> None:
    stack = parse_stack(minimal(gateway={"apiKeysSecretRef": {"name": "keys", "key": "token"}}))
    assert stack.spec.gateway.api_keys_secret_ref is not None
    assert stack.spec.gateway.api_keys_secret_ref.env_name() == "AISTACK_SECRET_KEYS_TOKEN"


@pytest.mark.parametrize("quantity", ["50Gi", "500m", "1.5", 2, "1e3", "128Mi"])
def test_valid_quantities_are_accepted_and_kept_as_strings(quantity: object) -> None:
    data = minimal()
    data["spec"]["gateway"] = {"resources": {"requests": {"cpu": quantity}}}
    stack = parse_stack(data)
    assert stack.spec.gateway.resources.requests["cpu"] == str(quantity)


@pytest.mark.parametrize("quantity", ["50GB", "-1", "lots", True, "1.2.3"])
def test_invalid_quantities_are_refused(quantity: object) -> None:
    data = minimal()
    data["spec"]["gateway"] = {"resources": {"limits": {"memory": quantity}}}
    with pytest.raises(ManifestError) as info:
        parse_stack(data)
    assert info.value.errors[0].path == "spec.gateway.resources.limits.memory"


def test_multi_document_file_reports_each_document_and_skips_other_kinds(tmp_path: Path) -> None:
    good = (ROOT / "examples" / "quickstart.yaml").read_text()
    other = "apiVersion: v1\nkind: Secret\nmetadata: {name: openai}\n"
    bad = good.replace("name: gpt-4o-mini", "name: ''")
    path = tmp_path / "multi.yaml"
    path.write_text("\n---\n".join([good, other, bad]))
    docs = load_documents(path)
    assert [d.index for d in docs] == [0, 1, 2]
    assert docs[0].stack is not None and not docs[0].errors
    assert docs[1].skipped == "v1/Secret"
    assert [e.path for e in docs[2].errors] == ["spec.model.name"]


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: aistack.dev/v1alpha1\nkind: AIStack\nspec: [\n")
    (doc,) = load_documents(path)
    assert doc.errors[0].path.startswith("line ")
    assert "invalid YAML" in doc.errors[0].message


def test_round_trip_through_wire_form_is_stable() -> None:
    for path in EXAMPLES:
        stack = load_stack(path)
        again = parse_stack({**stack.model_dump(mode="json", exclude_none=True, by_alias=True),
                             "spec": stack.spec.to_wire()})
        assert again.spec == stack.spec
