"""`aistack up STACK.yaml`: run the whole manifest on this machine until Ctrl-C."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from aistack.cli.progress import Stages

if TYPE_CHECKING:
    from aistack.runtime.local.engine_model import EngineChoice

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
ENGINES: dict[str, EngineChoice] = {"auto": "auto", "vllm": "vllm", "transformers": "transformers"}


def up_cmd(
    manifest: Annotated[Path, typer.Argument(help="The AIStack manifest.", show_default=False)],
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Gateway port on 127.0.0.1.")] = 8080,
    state: Annotated[Path | None, typer.Option("--state", metavar="DIR",
                                               help="State folder (default: <manifest "
                                               "folder>/.aistack/<name>).")] = None,
    model_url: Annotated[str | None, typer.Option("--model-url", metavar="URL",
                                                  help="An OpenAI-compatible model endpoint (vLLM, Ollama) "
                                                  "for a vLLM spec.")] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", metavar="URL",
                                                     help="Use this MLflow instead of starting one.")] = None,
    offline: Annotated[bool, typer.Option("--offline",
                                          help="Serve the built-in offline model even if the spec's "
                                          "endpoint answers.")] = False,
    ingest: Annotated[bool, typer.Option("--ingest/--no-ingest",
                                         help="Ingest retrieval.sources at start.")] = True,
    mlflow_port: Annotated[int, typer.Option("--mlflow-port", metavar="PORT",
                                             help="Port of the local MLflow UI on 127.0.0.1 (a free one if "
                                             "taken); `aistack ui` reopens it there.")] = 5050,
    engine: Annotated[str, typer.Option(
        "--engine", metavar="ENGINE",
        help="What serves a local model: auto (the vLLM engine where `aistack engine install` made "
             "one, else transformers), vllm (fail without it), transformers (in-process).")] = "auto",
    replicas: Annotated[int | None, typer.Option(
        "--replicas", metavar="N", min=1, max=16,
        help="vLLM engines for the local model, routed over by the gateway as a cluster's replicas "
             "(each ~4 GB of memory). Default: the spec's model.vllm.replicas, else 1.")] = None,
) -> None:
    """Run a manifest's whole stack on this machine until Ctrl-C.

    The gateway, embedded Qdrant, a local MLflow and guardrails. The model is the spec's
    endpoint when it answers; otherwise the built-in offline model (SmolLM2-135M) serves,
    labelled as such in /v1/models and in every answer. Data stays in the state folder: the
    next `aistack up` finds it.
    """
    from aistack.api.manifests import ManifestError
    from aistack.runtime.local.loads import loads_in_flight
    from aistack.runtime.local.runner import LocalStack, UpOptions
    from aistack.runtime.local.state import StateBusy

    if engine not in ENGINES:
        err.print(f"--engine: {engine!r} is not one of auto, vllm, transformers", markup=False)
        raise typer.Exit(2)
    if not 1 <= mlflow_port <= 65535:
        err.print(f"--mlflow-port: {mlflow_port} is not a port (1-65535)")
        raise typer.Exit(2)
    stages = Stages(err)
    panel = StatusPanel(stages)
    try:
        local = LocalStack(manifest,
                           UpOptions(port=port, state=state, model_url=model_url, tracking_uri=tracking_uri,
                                     offline=offline, ingest=ingest, mlflow_port=mlflow_port,
                                     engine=ENGINES[engine], replicas=replicas),
                           on_status=panel.show, on_stage=stages.begin, on_detail=stages.detail)
        local.lock()
    except ManifestError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    except StateBusy as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(1) from None
    err.print(f"starting {local.stack.name} (state: {local.folder}) ...")
    try:
        with stages:
            asyncio.run(local.run())
    # Ctrl-C outside the event loop (its first or last moments): nothing is left to stop
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # every part reports a message that says what to do
        err.print(f"aistack up failed: {exc}", markup=False)
        raise typer.Exit(1) from None
    err.print("stopped; data kept in " + str(local.folder))
    # Every part is stopped and flushed. The interpreter's exit would still walk the ~500k objects
    # that torch and its kin allocate, for seconds; frozen, they are left to the OS.
    gc.freeze()
    if local.interrupted and loads_in_flight():
        # a model load abandoned in its daemon thread: do not let the interpreter's shutdown run under it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


class StatusPanel:
    """The status panel, printed when the stack is ready. Outside a terminal (a log, `make demo`
    piping it) it is printed once, so it never lands between later output; on a terminal it is
    printed again only when something in it really changed (MLflow came up, chunks changed). The
    engine's load is as of the print: new numbers alone do not print it again (its /metrics and the
    gateway's `aistack_engine_*` gauges follow them), its row appearing or going does."""

    def __init__(self, stages: Stages) -> None:
        self.stages = stages
        self._last: tuple[Any, ...] | None = None

    def show(self, status: Any) -> None:
        key = (status.gateway_url, status.model, status.model_note, status.engine, status.scaling,
               status.chunks,
               status.ingest_note,
               status.guardrails, status.mlflow_url, status.mlflow_state, tuple(status.notes),
               status.engine_load is not None, status.adapters)
        if self._last is not None and (key == self._last or not out.is_terminal):
            return
        self._last = key
        self.stages.end()
        _show(status)


def _show(status: Any) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("endpoint", f"{status.gateway_url}/v1  (OpenAI-compatible)")
    model_style = "bold yellow" if status.offline else ""
    table.add_row("model", f"[{model_style}]{status.model}[/]  {status.model_note}" if model_style else
                  f"{status.model}  {status.model_note}")
    if status.engine:
        table.add_row("engine", status.engine)
    if status.adapters:
        table.add_row("adapters", status.adapters)
    if status.scaling:
        table.add_row("scaling", status.scaling)
    if status.engine_load is not None:
        table.add_row("engine load", engine_load_text(status.engine_load))
    if status.collection is not None:
        table.add_row("collection", f"{status.collection}: {status.chunks} chunks  {status.ingest_note}")
    table.add_row("guardrails", status.guardrails)
    if status.mlflow_url:
        table.add_row("MLflow UI", f"{status.mlflow_url}  ({status.mlflow_state})")
    for note in status.notes:
        table.add_row("note", note)
    out.print(Panel(table, title="aistack up", subtitle="Ctrl-C to stop", expand=False))


def engine_load_text(load: Any) -> str:
    """`2 running · 0 waiting · KV cache 3% · prefix hits 41%` from an `EngineLoad`."""
    hits = load.prefix_cache_hit_rate
    return (f"{load.running} running · {load.waiting} waiting · KV cache {load.kv_cache_usage:.0%} · "
            f"prefix hits {'none yet' if hits is None else format(hits, '.0%')}")
