"""The request side of tracing: spans recorded in memory, and the `Tracer` that hands each
finished trace to the exporter process (`aistack.runtime.tracing.export`) without waiting."""

from __future__ import annotations

import contextlib
import queue
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aistack.api.gateway_config import TracingConfig
from aistack.runtime.core.metrics import GatewayMetrics


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

    def record_inputs(self, inputs: Any) -> None:
        """The request's inputs, once known: the gateway records them after the input rails, so
        a trace never holds text the rails masked or refused."""
        self.root.inputs = inputs

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

    def record_inputs(self, inputs: Any) -> None:
        return None

    def finish(self, *, outputs: Any = None, error: str | None = None, **attributes: Any) -> None:
        return None


class Tracer:
    """Owns the export queue and the exporter process; one per gateway config.

    The exporter is a separate process (spawned): MLflow's import, span building and HTTP
    export then never hold this process's GIL, so they cost the request path nothing but a
    `put_nowait` (the pickling happens on the queue's feeder thread).
    """

    def __init__(self, *, config: TracingConfig | None, tags: dict[str, str],
                 metrics: GatewayMetrics) -> None:
        self.config = config
        self.tags = tags
        self.metrics = metrics
        self._queue: Any = queue.Queue(maxsize=1)
        self._process: Any = None
        self._counts: tuple[Any, Any] | None = None
        self._synced = [0, 0]
        if config is not None:
            from aistack.runtime.tracing.export import start_exporter

            self._queue, self._process, self._counts = start_exporter(config)

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

    def sync_metrics(self) -> None:
        """Carry the exporter's counts (shared memory) into this gateway's Prometheus counters."""
        if self._counts is None:
            return
        exported, failed = self._counts[0].value, self._counts[1].value
        if exported > self._synced[0]:
            self.metrics.traces_exported.inc(exported - self._synced[0])
        if failed > self._synced[1]:
            self.metrics.traces_dropped.labels("export_failed").inc(failed - self._synced[1])
        self._synced = [exported, failed]

    def close(self, timeout_s: float = 3.0) -> None:
        """Stop the exporter after what is queued, within about `timeout_s`; then terminate it.

        Bounded because a stop must not wait on a slow MLflow; joined, so no zombie is left.
        """
        process, self._process = self._process, None
        if process is None:
            return
        self.sync_metrics()
        try:
            self._queue.put(None, timeout=timeout_s / 2)
        except queue.Full:
            pass  # MLflow is too slow to drain the queue: what is left is dropped
        process.join(timeout=timeout_s)
        if process.is_alive():
            process.terminate()
            process.join(timeout=timeout_s)
        if process.is_alive():
            process.kill()
            process.join(timeout=timeout_s)
        self._queue.cancel_join_thread()
