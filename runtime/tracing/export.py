"""The trace exporter process: takes finished traces from a queue and writes them to MLflow.

Spawned by `Tracer` so MLflow's CPU work never competes with the gateway's event loop for the
GIL. Counts exported and failed traces in shared memory, which the gateway reads into
Prometheus.

The exporter ignores SIGINT: a Ctrl-C at a terminal reaches the whole process group, and the
gateway that owns the exporter stops it in order (`Tracer.close`) after what is queued, so
the child neither dies mid-export nor prints a KeyboardInterrupt traceback.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import sys
import time
from typing import Any

from aistack.api.gateway_config import TracingConfig

log = logging.getLogger("aistack.tracing")
# MLflow's exporter logs a failed export instead of raising; here that record becomes a counted
# failure and one line of our own per outage instead of a warning per trace.
MLFLOW_EXPORT_LOGGER = "mlflow.tracing.export.mlflow_v3"
PARENT_CHECK_SECONDS = 2.0
"""How often an idle exporter checks that its gateway still lives (it holds the queue's write end too,
so a killed gateway does not end its `get`)."""


class _ExportFailures(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.message: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.message = record.getMessage()
            return False
        return True

    def take(self) -> str | None:
        message, self.message = self.message, None
        return message


def start_exporter(config: TracingConfig) -> tuple[Any, Any, tuple[Any, Any]]:
    """(queue, process, (exported, failed) counters) of a freshly spawned exporter."""
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue(maxsize=config.queue_size)
    exported, failed = ctx.Value("q", 0, lock=False), ctx.Value("q", 0, lock=False)
    env = {}
    if config.token_env and os.environ.get(config.token_env):
        env["MLFLOW_TRACKING_TOKEN"] = os.environ[config.token_env]
    process = ctx.Process(target=_exporter_main, args=(config.model_dump(), q, exported, failed, env),
                          name="aistack-trace-export", daemon=True)
    # The child inherits this thread's signal mask across fork and exec: SIGINT stays blocked
    # through the interpreter's start until export_loop ignores it (as multiprocessing's own
    # resource tracker does), so no Ctrl-C window remains.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return q, process, (exported, failed)


def _exporter_main(*args: Any) -> None:
    """The process: export until told to stop, then leave at once. Every trace is exported and
    counted by then; the interpreter's teardown with MLflow loaded (its exit hooks, the modules)
    would only add a second or two to every stop."""
    export_loop(*args)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def export_loop(config_data: dict[str, Any], q: Any, exported: Any, failed: Any, env: dict[str, str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a pending Ctrl-C is discarded, not delivered
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    os.environ.update(env)
    # Quick, bounded failures: the queue absorbs an outage, retries would only stall it.
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = TracingConfig.model_validate(config_data)
    import mlflow

    failures = _ExportFailures()
    logging.getLogger(MLFLOW_EXPORT_LOGGER).addFilter(failures)
    mlflow.set_tracking_uri(config.tracking_uri)
    exporter = _Exporter(mlflow, config)
    failing = False
    parent = multiprocessing.parent_process()
    while True:
        try:
            trace = q.get(timeout=PARENT_CHECK_SECONDS)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return  # the gateway was killed (kill -9): no sentinel will come, so do not outlive it
            continue
        if trace is None:
            return
        try:
            exporter.export(trace)
            error = failures.take()
        except Exception as err:  # MLflow down or slow: count it and go on
            error = str(err)
        if error is None:
            exported.value += 1
            if failing:
                log.info("trace export to %s works again", config.tracking_uri)
            failing = False
            continue
        failed.value += 1
        if not failing:
            log.warning("trace export to %s failed, dropping traces until it works: %s",
                        config.tracking_uri, error[:300])
        failing = True


class _Exporter:
    def __init__(self, mlflow: Any, config: TracingConfig) -> None:
        self.mlflow = mlflow
        self.config = config
        self.experiment_id: str | None = None

    def _experiment(self) -> str:
        if self.experiment_id is None:
            client = self.mlflow.MlflowClient(tracking_uri=self.config.tracking_uri)
            found = client.get_experiment_by_name(self.config.experiment)
            self.experiment_id = found.experiment_id if found else client.create_experiment(
                self.config.experiment)
        return self.experiment_id

    def export(self, trace: Any) -> None:
        mlflow = self.mlflow
        experiment_id = self._experiment()
        r = trace.root
        root = mlflow.start_span_no_context(name=r.name, span_type=r.span_type, inputs=r.inputs,
                                            attributes=r.attributes, tags=trace.tags,
                                            experiment_id=experiment_id,
                                            start_time_ns=r.start_ns)
        for s in trace.spans:
            child = mlflow.start_span_no_context(name=s.name, span_type=s.span_type, parent_span=root,
                                                 inputs=s.inputs,
                                                 attributes=s.attributes, start_time_ns=s.start_ns)
            child.end(outputs=s.outputs, status="ERROR" if s.error else "OK",
                      end_time_ns=s.end_ns or r.end_ns)
        root.end(outputs=r.outputs, status="ERROR" if r.error else "OK",
                 end_time_ns=r.end_ns or time.time_ns())
