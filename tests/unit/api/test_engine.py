"""The engine contract (api/engine.py): the vLLM command line from the spec, and extraArgs held to
the pinned release's parser (api/vllm_flags.py) before anything reaches a pod."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from aistack.api import vllm_flags
from aistack.api.engine import DEFAULT_VLLM_IMAGE, VLLM_VERSION, check_extra_args, server_args
from aistack.api.manifests import ManifestError, parse_stack
from aistack.api.v1alpha1.model import ModelSpec

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
PRODUCTION: dict[str, Any] = yaml.safe_load((EXAMPLES / "production.yaml").read_text())


def model(**vllm: Any) -> ModelSpec:
    return ModelSpec.model_validate({"provider": "vllm", "name": "org/m", "servedName": "m", "vllm": vllm})


def test_one_release_is_pinned_for_the_image_and_the_flag_table() -> None:
    assert f"vllm/vllm-openai:v{VLLM_VERSION}" == DEFAULT_VLLM_IMAGE
    assert vllm_flags.VLLM_FLAGS_VERSION == VLLM_VERSION


def test_server_args_name_the_model_then_placement_then_behaviour_then_extra_args() -> None:
    spec = model(maxModelLen=2048, dtype="bfloat16", toolCallParser="hermes",
                 extraArgs=["--enable-prefix-caching"])
    assert server_args(spec, placement=["--port", "1"]) == [
        "--model", "org/m", "--served-model-name", "m", "--port", "1", "--max-model-len", "2048",
        "--dtype", "bfloat16", "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
        "--enable-prefix-caching"]


def test_server_args_leave_unset_fields_to_vllm_and_take_a_local_weights_folder() -> None:
    assert server_args(model(), weights="/w") == ["--model", "/w", "--served-model-name", "m"]


def test_server_args_refuse_an_api_model() -> None:
    api = ModelSpec.model_validate({"provider": "openai", "name": "gpt", "openai": {
        "baseUrl": "https://x/v1", "apiKeySecretRef": {"name": "s", "key": "k"}}})
    with pytest.raises(ValueError, match="provider 'openai'"):
        server_args(api)


@pytest.mark.parametrize("args", [
    ["--enable-prefix-caching"],
    ["--enable_prefix_caching"],  # vLLM reads underscores as dashes
    ["--no-enable-prefix-caching"],
    ["--kv-cache-dtype", "fp8"],
    ["--kv-cache-dtype=fp8"],
    ["--block-size", "32", "--max-num-seqs", "8"],
    ["--compilation-config.cudagraph_mode", "NONE"],  # a key of a JSON-valued flag
    ["-O3"], ["-O", "2"],
    ["--allowed-origins", "[\"*\"]"],
    ["--seed", "-1"],  # a negative number is a value, not a flag
])
def test_flags_the_parser_accepts_pass(args: list[str]) -> None:
    assert check_extra_args(args) == []


@pytest.mark.parametrize(("args", "index", "message"), [
    (["--enable-prefix-cacheing"], 0,
     "not a flag of vLLM 0.32.0's server; did you mean --enable-prefix-caching?"),
    (["--no-such-thing"], 0, "--no-such-thing is not a flag of vLLM 0.32.0's server"),
    (["--enable-prefix-caching=yes"], 0,
     "--enable-prefix-caching is a switch and takes no value (got 'yes')"),
    (["--block-size"], 0, "--block-size needs a value"),
    (["--block-size", "--enable-prefix-caching"], 0, "--block-size needs a value"),
    (["--kv-cache-dtype", "fp9"], 0, "--kv-cache-dtype 'fp9' is not one of auto, "),
    (["--enable-prefix-caching", "true"], 1, "'true' is a value with no flag before it"),
    (["--port", "9000"], 0, "--port is set by aistack from (fixed at 8000); remove it here"),
    (["--max_model_len=4096"], 0, "--max-model-len is set by aistack from maxModelLen"),
    (["-tp", "2"], 0, "--tensor-parallel-size is set by aistack from tensorParallelSize"),
    (["--enable-auto-tool-choice"], 0, "set by aistack from toolCallParser"),
])
def test_flags_the_parser_rejects_are_named_with_their_index(args: list[str], index: int,
                                                            message: str) -> None:
    problems = check_extra_args(args)
    assert [i for i, _ in problems] == [index], problems
    assert message in problems[0][1]


def test_a_bad_extra_arg_is_a_spec_error_naming_the_field_and_the_flag() -> None:
    data = copy.deepcopy(PRODUCTION)
    data["spec"]["model"]["vllm"]["extraArgs"] = ["--enable-prefix-caching", "--max-num-seq", "8"]
    with pytest.raises(ManifestError) as caught:
        parse_stack(data)
    assert ("spec.model.vllm.extraArgs[1]: --max-num-seq is not a flag of vLLM 0.32.0's server; did you mean "
            "--max-num-seqs?") in str(caught.value)


def test_an_agent_with_tools_on_vllm_needs_a_tool_call_parser() -> None:
    data = copy.deepcopy(PRODUCTION)
    del data["spec"]["model"]["vllm"]["toolCallParser"]
    with pytest.raises(ManifestError,
                       match=r"spec\.model\.vllm\.toolCallParser: required for an agent with tools"):
        parse_stack(data)
    data["spec"]["orchestration"]["tools"] = []
    parse_stack(data)  # no tools: nothing to parse


def test_the_generated_flag_table_says_so_and_is_sorted() -> None:
    text = Path(vllm_flags.__file__).read_text()
    assert "generated by `python -m aistack.runtime.engine.parser`" in text and "do not edit" in text
    assert list(vllm_flags.FLAGS) == sorted(vllm_flags.FLAGS)
    assert all(arity in ("0", "1", "?", "+", "*") for arity, _ in vllm_flags.FLAGS.values())
