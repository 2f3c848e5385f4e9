"""The engine contract: the vLLM server's command line, derived once from the model spec.

The operator's rendered Deployment (`aistack.operator.render.model`) and the local runner
(`aistack.runtime.engine`) both call `server_args()`, so a laptop runs the flags the cluster runs;
each adds only what is its own (where to listen, devices, parallelism, memory) through `placement`.
One vLLM release is pinned here for the rendered image, the local engine and the tests; the flags
its parser accepts are `aistack.api.vllm_flags` (generated from that release's real parser), which
`check_extra_args()` holds `extraArgs` to, so a typo is an InvalidSpec and not a crash-looping pod.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aistack.api.vllm_flags import FLAGS

if TYPE_CHECKING:
    from aistack.api.v1alpha1.model import ModelSpec

VLLM_VERSION = "0.32.0"
DEFAULT_VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"

# Flags aistack sets from typed fields (or from where the engine runs); passing them again in
# extraArgs would silently fight the typed value, and some would carry secrets into the pod spec.
RESERVED_VLLM_FLAGS = {
    "--model": "name",
    "--served-model-name": "servedName",
    "--tensor-parallel-size": "tensorParallelSize",
    "--max-model-len": "maxModelLen",
    "--gpu-memory-utilization": "gpuMemoryUtilization",
    "--dtype": "dtype",
    "--tool-call-parser": "toolCallParser",
    "--enable-auto-tool-choice": "toolCallParser",
    "--port": "(fixed at 8000)",
    "--host": "(fixed at 0.0.0.0)",
    "--api-key": "(secrets go in Secrets)",
    "--hf-token": "hfTokenSecretRef",
    "--enable-lora": "adapters (or lora)",
    "--no-enable-lora": "adapters (or lora)",
    "--max-lora-rank": "lora.maxRank",
    "--max-cpu-loras": "lora.maxAdapters",
    "--max-loras": "lora.maxAdaptersPerBatch",
    "--lora-modules": "adapters (loaded at runtime by the adapter agent)",
}
RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
"""Set to `1` in an engine with LoRA on: its /v1/load_lora_adapter and /v1/unload_lora_adapter
endpoints exist only then (the adapter agent calls them)."""
# Spellings of reserved flags the parser also takes (`-tp`, `--max_model_len`): held to the same rule.
_ALIASES = {"-tp": "--tensor-parallel-size"}


def server_args(model: ModelSpec, *, placement: Sequence[str] = (), weights: str | None = None) -> list[str]:
    """The vLLM OpenAI-server flags for `model` (provider vllm): what to serve and under which name,
    then the caller's `placement` (host, port, parallelism, memory), then the behaviour the spec
    sets, the user's `extraArgs` last. `weights` replaces the model name where the weights are a
    local folder (the local runner's prepared offline model).

    LoRA flags come from `vllm.lora` (its defaults with `adapters`), never from the adapter list,
    so a list that changes leaves a pod template unchanged: the adapter agent beside each engine
    (`aistack.runtime.engine.adapter_agent`, in the cluster and with `aistack up`) loads the adapters
    at runtime, with the engine's `RUNTIME_LORA_ENV` set."""
    vllm = model.vllm
    if vllm is None:
        raise ValueError(f"model {model.name!r} has provider {model.provider!r}: no vLLM server to start")
    args = ["--model", weights or model.name, "--served-model-name", model.public_name, *placement]
    if vllm.max_model_len is not None:
        args += ["--max-model-len", str(vllm.max_model_len)]
    if vllm.dtype is not None:
        args += ["--dtype", vllm.dtype]
    if vllm.tool_call_parser is not None:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", vllm.tool_call_parser]
    if vllm.lora_enabled:
        lora = vllm.lora_settings
        args += ["--enable-lora", "--max-lora-rank", str(lora.max_rank),
                 "--max-cpu-loras", str(lora.max_adapters), "--max-loras", str(lora.adapters_per_batch)]
    return args + list(vllm.extra_args)


def canonical_flag(flag: str) -> str:
    """The name the parser knows a flag by: vLLM reads `--max_model_len` as `--max-model-len`, and
    `--kv-transfer-config.kv_role` as a key of `--kv-transfer-config`."""
    if flag.startswith("-O"):  # -O3: vLLM's --optimization-level 3
        return "--optimization-level"
    if not flag.startswith("--"):
        return _ALIASES.get(flag, flag)
    head = flag.split(".", 1)[0]
    return head.replace("_", "-")


def check_extra_args(args: Sequence[str]) -> list[tuple[int, str]]:
    """(index, message) for each problem in an `extraArgs` list, checked against the pinned vLLM's
    parser: an unknown flag (with the closest known one), a switch given a value, a flag missing
    its value, a value outside the flag's choices, a stray value, a flag aistack sets itself."""
    problems: list[tuple[int, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or arg == "-":
            problems.append((i, f"{arg!r} is a value with no flag before it"))
            i += 1
            continue
        flag, sep, inline = arg.partition("=")
        has_inline = bool(sep)
        if flag.startswith("-O") and not flag.startswith("--"):  # vLLM's -O3, -O=3, -O 3
            if flag != "-O":
                inline, has_inline = flag[2:], True
            flag = "--optimization-level"
        name = canonical_flag(flag)
        known = FLAGS.get(name)
        reserved = RESERVED_VLLM_FLAGS.get(name)
        if known is None and reserved is None:
            close = difflib.get_close_matches(name, FLAGS, n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append((i, f"{flag} is not a flag of vLLM {VLLM_VERSION}'s server{hint}"))
            i += 1
            continue
        if reserved is not None:
            problems.append((i, f"{name} is set by aistack from {reserved}; remove it here"))
        arity, choices = known or ("1", ())
        dotted = "." in flag  # a key of a JSON-valued flag: its value is JSON, not a choice
        at = i
        i += 1
        if arity == "0" and not dotted:
            if has_inline and reserved is None:
                problems.append((at, f"{name} is a switch and takes no value (got {inline!r})"))
            continue
        values = [inline] if has_inline else []
        while not has_inline and i < len(args) and not _looks_like_flag(args[i]) and (
                arity in ("+", "*") or not values):
            values.append(args[i])
            i += 1
        if reserved is not None:
            continue
        if not values and arity not in ("?", "*"):
            problems.append((at, f"{flag} needs a value"))
        for value in values:
            if choices and not dotted and value not in choices:
                problems.append((at, f"{name} {value!r} is not one of {', '.join(choices)}"))
    return problems


def _looks_like_flag(arg: str) -> bool:
    """argparse reads `-1` or `-0.5` as a value, `-x` or `--x` as the next flag."""
    if not arg.startswith("-") or arg == "-":
        return False
    try:
        float(arg)
    except ValueError:
        return True
    return False
