"""`aistack ui STACK.yaml`: reopen the MLflow UI on a stack's recorded traces and runs.

`aistack up` stops its MLflow with the rest of the stack, so a link printed while it ran (by
`make demo`, say) goes dead. This serves the same state folder's MLflow alone, on the same
stable port, until Ctrl-C: no model, no gateway, nothing to load but MLflow itself.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from aistack.cli.progress import Stages

if TYPE_CHECKING:
    from aistack.runtime.local.mlflow_server import MlflowServer

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def ui_cmd(
    manifest: Annotated[Path, typer.Argument(metavar="FILE", help="The AIStack manifest.",
                                             show_default=False)],
    port: Annotated[int, typer.Option(
        "--port", metavar="PORT", help="Port of the MLflow UI on 127.0.0.1 (a free one if taken).")] = 5050,
    state: Annotated[Path | None, typer.Option("--state", metavar="DIR",
                                               help="State folder (default: <manifest "
                                               "folder>/.aistack/<name>).")] = None,
) -> None:
    """Reopen the MLflow UI on a stack's recorded traces, until Ctrl-C.

    Serves the MLflow data that `aistack up` recorded in the state folder, without starting the
    rest of the stack. While `aistack up` runs the stack it prints that stack's UI link instead.
    Exit code 0: served until Ctrl-C, or `aistack up` already serves it; 1: MLflow could not
    start, or another command holds the state folder; 2: nothing to serve (bad manifest, no
    local MLflow data).
    """
    from aistack.api.conventions import experiment_name
    from aistack.api.manifests import ManifestError, load_stack
    from aistack.runtime.local.mlflow_server import INSTALL_HINT, MlflowServer, missing_server_packages
    from aistack.runtime.local.state import StateBusy, StateLock, running_stack, state_dir

    if not 1 <= port <= 65535:
        err.print(f"--port: {port} is not a port (1-65535)")
        raise typer.Exit(2)
    try:
        stack = load_stack(manifest)
    except ManifestError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    observability = stack.spec.observability
    if observability is None:
        err.print(f"{manifest}: spec.observability: the stack records no traces, so there is no UI to open")
        raise typer.Exit(2)
    if observability.mlflow.external is not None:
        err.print(f"{manifest}: spec.observability.mlflow.external: the stack records to "
                  f"{observability.mlflow.external.tracking_uri}; open that", markup=False)
        raise typer.Exit(2)
    folder = state_dir(manifest, stack, state)
    server = MlflowServer(folder=folder / "mlflow", port=port)
    if not server.database.is_file():
        err.print(f"no MLflow data in {server.folder}: run `aistack up {manifest}` first "
                  "(or pass the --state it used)", markup=False)
        raise typer.Exit(2)
    missing = missing_server_packages()
    if missing:
        err.print(f"the MLflow server needs {', '.join(missing)}: {INSTALL_HINT}")
        raise typer.Exit(2)
    lock = StateLock(folder, command="aistack ui")
    try:
        lock.acquire()
    except StateBusy as exc:
        running = running_stack(folder) if exc.command == "aistack up" else None
        if running is not None and running.mlflow_url:
            out.print(f"`aistack up` (pid {running.pid}) is running this stack and serves its trace UI: "
                      f"{running.mlflow_url}", markup=False)
            return
        err.print(str(exc), markup=False)
        raise typer.Exit(1) from None
    experiment = experiment_name(namespace=stack.namespace, name=stack.name,
                                 configured=observability.experiment)
    try:
        _serve(server, stack_name=stack.name, experiment=experiment)
    finally:
        lock.release()
    err.print(f"stopped; data kept in {folder}", markup=False)


def _serve(server: MlflowServer, *, stack_name: str, experiment: str) -> None:
    """Start MLflow, print where to look, wait for Ctrl-C (a second one kills it), stop it."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            server.kill()
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        with Stages(err) as stages:
            stages.begin(f"starting MLflow at {server.url}")
            while not stop.is_set() and server.exit_code() is None and not server.healthy():
                stop.wait(0.5)
        if stop.is_set():
            return
        if server.exit_code() is not None:
            err.print(f"MLflow exited with code {server.exit_code()} while starting: see {server.log}",
                      markup=False)
            raise typer.Exit(1)
        if server.moved_from is not None:
            err.print(f"port {server.moved_from} is in use: MLflow is on {server.port} instead "
                      "(--port picks another)")
        out.print(f"MLflow UI of {stack_name}: {experiment_link(server.url, experiment)}  "
                  f"(experiment '{experiment}' -> Traces)", markup=False)
        err.print("Ctrl-C to stop")
        while not stop.wait(1.0):
            if server.exit_code() is not None:
                err.print(f"MLflow exited with code {server.exit_code()}: see {server.log}", markup=False)
                raise typer.Exit(1)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def experiment_link(url: str, experiment: str) -> str:
    """The experiment's page when MLflow knows it (a stack that served no request has none yet)."""
    import httpx

    try:
        response = httpx.get(f"{url}/api/2.0/mlflow/experiments/get-by-name",
                             params={"experiment_name": experiment}, timeout=5)
        experiment_id = response.json()[
            "experiment"]["experiment_id"] if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError):
        experiment_id = None
    return f"{url}/#/experiments/{experiment_id}" if experiment_id else url
