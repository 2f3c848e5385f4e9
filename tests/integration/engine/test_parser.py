"""The rendered vLLM command lines against the real parser of the pinned release, and the generated
flag table (api/vllm_flags.py) against that parser (drift)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aistack.api import vllm_flags
from aistack.api.engine import check_extra_args
from aistack.api.manifests import load_stack
from aistack.api.v1alpha1.model import ModelSpec
from aistack.operator.render import render
from aistack.runtime.engine.locate import EngineLocation
from aistack.runtime.engine.parser import ParserSession, flags_module, read_flags
from aistack.runtime.engine.server import local_command

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.yaml"))


def rendered_vllm_args(path: Path) -> list[str] | None:
    stack = load_stack(path)
    for manifest in render(stack, version="0.0.0-test").manifests:
        if manifest["kind"] == "Deployment":
            for container in manifest["spec"]["template"]["spec"]["containers"]:
                if container["name"] == "vllm":
                    return list(container["args"])
    return None


def test_the_flag_table_is_what_the_real_parser_accepts(engine: EngineLocation) -> None:
    found = read_flags(engine.python)
    assert found.version == vllm_flags.VLLM_FLAGS_VERSION
    assert flags_module(found) == Path(vllm_flags.__file__).read_text(), \
        "api/vllm_flags.py is stale: run `make vllm-flags` (python -m aistack.runtime.engine.parser)"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_examples_rendered_vllm_command_is_accepted(path: Path, real_parser: ParserSession) -> None:
    args = rendered_vllm_args(path)
    if args is None:
        assert load_stack(path).spec.model.provider != "vllm"
        return
    assert real_parser.check(args) is None


def test_the_local_command_is_accepted(engine: EngineLocation, real_parser: ParserSession) -> None:
    spec = load_stack(EXAMPLES[0].parent / "production.yaml").spec.model
    command = local_command(engine, spec, build="cpu", host="127.0.0.1", port=8123, weights="/weights")
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert real_parser.check(command[3:]) is None


@pytest.mark.parametrize("bad", [["--no-such-flag"], ["--dtype", "float99"], ["--block-size"],
                                 ["--enable-prefix-caching=maybe"]])
def test_a_flag_the_parser_rejects_fails(real_parser: ParserSession, bad: list[str]) -> None:
    base = ["--model", "m", "--served-model-name", "m"]
    error = real_parser.check(base + bad)
    assert error is not None and ("error:" in error or "Error" in error)


@pytest.mark.parametrize("extra", [
    ["--enable-prefix-caching"], ["--enable_prefix_caching"], ["--kv-cache-dtype", "fp8"],
    ["--block-size", "32"], ["--compilation-config.cudagraph_mode", "NONE"], ["-O3"], ["--seed", "-1"],
    ["--max-num-seqs=8"], ["--enable-prefix-cacheing"], ["--kv-cache-dtype", "fp9"], ["--block-size"],
    ["--enable-prefix-caching=1"],
])
def test_extra_args_validation_agrees_with_the_real_parser(real_parser: ParserSession,
                                                          extra: list[str]) -> None:
    spec = ModelSpec.model_validate({"provider": "vllm", "name": "m", "vllm": {}})
    ours = check_extra_args(extra)
    theirs = real_parser.check(["--model", spec.name, *extra])
    assert (ours == []) == (theirs is None), (ours, theirs)


def test_a_stray_value_is_refused_though_the_parser_takes_it_as_its_model_tag(
        real_parser: ParserSession) -> None:
    """The parser's optional positional `model_tag` swallows one stray word, which the OpenAI server
    then ignores: `--enable-prefix-caching true` would run with a `true` that does nothing."""
    assert real_parser.check(["--model", "m", "--enable-prefix-caching", "true"]) is None
    assert check_extra_args(["--enable-prefix-caching", "true"]) == [
        (1, "'true' is a value with no flag before it")]
