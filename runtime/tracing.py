"""MLflow traces of every request, exported off the request path.

The request path only records spans in plain Python objects and hands the finished trace to a
bounded queue (`put_nowait`, microseconds). One daemon thread rebuilds each trace with MLflow's
span API and exports it synchronously, so a slow or down MLflow only fills the queue: traces
are then dropped and counted (`aistack_gateway_traces_dropped_total`), never waited for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aistack.api.gateway_config import TracingConfig
from aistack.runtime.gateway.metrics import GatewayMetrics

log = logging.getLogger("aistack.tracing")


@dataclass
class SpanRecord:
    name: str
    span_type: str
    start_ns: int
    end_ns: int = 0
    inputs: Any = None
    outputs: Any = None
    attributes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class RequestTrace:
    """The spans of one request, recorded in memory."""

    enabled = True

    def __init__(self, *, name: str, inputs: Any, tags: dict[str, str]) -> None:
        self.root = SpanRecord(name=name, span_type="CHAIN", start_ns=time.time_ns(), inputs=inputs)
        self.tags = dict(tags)
        self.spans: list[SpanRecord] = []

    @contextlib.contextmanager
    def span(self, name: str, span_type: str = "UNKNOWN", inputs: Any = None) -> Iterator[SpanRecord]:
        record = SpanRecord(name=name, span_type=span_type, start_ns=time.time_ns(), inputs=inputs)
        self.spans.append(record)
        try:
            yield record
        except BaseException as err:
            record.error = f"{type(err).__name__}: {err}"
            raise
        finally:
            record.end_ns = time.time_ns()

    def finish(self, *, outputs: Any = None, error: str | None = None, **attributes: Any) -> None:
        self.root.end_ns = time.time_ns()
        self.root.outputs = outputs
        self.root.error = error
        self.root.attributes.update(attributes)


class _NullSpan:
    """Absorbs attribute writes when a request is not traced."""

    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}
        self.outputs: Any = None
        self.inputs: Any = None


class NullTrace:
    """A request that is not traced (tracing off, or not sampled)."""

    enabled = False
    tags: dict[str, str] = {}

    @contextlib.contextmanager
    def span(self, name: str, span_type: str = "UNKNOWN", inputs: Any = None) -> Iterator[Any]:
        yield _NullSpan()

    def finish(self, *, outputs: Any = None, error: str | None = None, **attributes: Any) -> None:
        return None


EXPORT_THREAD = "aistack-trace-export"
# MLflow's exporter logs a failed export instead of raising; on our export thread we turn that
# record into a counted failure (and one line of our own) instead of a warning per trace.
MLFLOW_EXPORT_LOGGER = "mlflow.tracing.export.mlflow_v3"


class _ExportFailures(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.failed = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if threading.current_thread().name.startswith(EXPORT_THREAD) and record.levelno >= logging.WARNING:
            self.failed.message = record.getMessage()
            return False
        return True

    def take(self) -> str | None:
        message = getattr(self.failed, "message", None)
        self.failed.message = None
        return message


_FAILURES = _ExportFailures()
logging.getLogger(MLFLOW_EXPORT_LOGGER).addFilter(_FAILURES)


class Tracer:
    """Owns the export queue and thread; one per gateway config."""

    def __init__(self, *, config: TracingConfig | None, tags: dict[str, str], metrics: GatewayMetrics) -> None:
        self.config = config
        self.tags = tags
        self.metrics = metrics
        self._queue: queue.Queue[RequestTrace | None] = queue.Queue(maxsize=config.queue_size if config else 1)
        self._thread: threading.Thread | None = None
        self._experiment_id: str | None = None
        if config is not None:
            # Bounded, quick failures in the export thread: the queue absorbs an outage.
            os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
            self._thread = threading.Thread(target=self._run, name=EXPORT_THREAD, daemon=True)
            self._thread.start()

    def start(self, *, name: str, inputs: Any) -> RequestTrace | NullTrace:
        if self.config is None or (self.config.sampling < 1.0 and random.random() >= self.config.sampling):
            return NullTrace()
        return RequestTrace(name=name, inputs=inputs, tags=self.tags)

    def submit(self, trace: RequestTrace | NullTrace) -> None:
        """Hand a finished trace to the exporter; never blocks."""
        if not isinstance(trace, RequestTrace):
            return
        try:
            self._queue.put_nowait(trace)
        except queue.Full:
            self.metrics.traces_dropped.labels("queue_full").inc()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the export thread after what is queued (bounded by `timeout_s`)."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout=timeout_s)
        self._thread = None

    def _run(self) -> None:
        assert self.config is not None
        import mlflow

        if self.config.token_env and os.environ.get(self.config.token_env):
            os.environ.setdefault("MLFLOW_TRACKING_TOKEN", os.environ[self.config.token_env])
        mlflow.set_tracking_uri(self.config.tracking_uri)
        failing = False
        while True:
            trace = self._queue.get()
            if trace is None:
                return
            try:
                self._export(mlflow, trace)
                error = _FAILURES.take()
            except Exception as err:  # MLflow down or slow: count it and go on
                error = str(err)
            if error is None:
                self.metrics.traces_exported.inc()
                if failing:
                    log.info("trace export to %s works again", self.config.tracking_uri)
                failing = False
                continue
            self.metrics.traces_dropped.labels("export_failed").inc()
            if not failing:  # one line per outage, not one per trace
                log.warning("trace export to %s failed, dropping traces until it works: %s",
                            self.config.tracking_uri, error[:300])
            failing = True

    def _experiment(self, mlflow: Any) -> str:
        if self._experiment_id is None:
            assert self.config is not None
            client = mlflow.MlflowClient(tracking_uri=self.config.tracking_uri)
            found = client.get_experiment_by_name(self.config.experiment)
            self._experiment_id = found.experiment_id if found else client.create_experiment(self.config.experiment)
        return self._experiment_id

    def _export(self, mlflow: Any, trace: RequestTrace) -> None:
        experiment_id = self._experiment(mlflow)
        r = trace.root
        root = mlflow.start_span_no_context(name=r.name, span_type=r.span_type, inputs=r.inputs,
                                            attributes=r.attributes, tags=trace.tags, experiment_id=experiment_id,
                                            start_time_ns=r.start_ns)
        for s in trace.spans:
            child = mlflow.start_span_no_context(name=s.name, span_type=s.span_type, parent_span=root, inputs=s.inputs,
                                                 attributes=s.attributes, start_time_ns=s.start_ns)
            child.end(outputs=s.outputs, status="ERROR" if s.error else "OK", end_time_ns=s.end_ns or r.end_ns)
        root.end(outputs=r.outputs, status="ERROR" if r.error else "OK", end_time_ns=r.end_ns or time.time_ns())
