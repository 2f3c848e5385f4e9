"""MLflow traces of every request, exported off the request path.

The request path only records spans in plain Python objects (`tracer`) and hands the finished
trace to a bounded queue (`put_nowait`, microseconds). A separate exporter process (`export`)
rebuilds each trace with MLflow's span API and exports it synchronously, so a slow or down
MLflow only fills the queue: traces are then dropped and counted
(`aistack_gateway_traces_dropped_total`), never waited for.
"""

from aistack.runtime.tracing.tracer import NullTrace, RequestTrace, SpanRecord, Tracer

__all__ = ["NullTrace", "RequestTrace", "SpanRecord", "Tracer"]
