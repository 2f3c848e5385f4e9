"""Prometheus metrics of one gateway, on its own registry (several gateways may share a process
in tests and in `aistack up`).

The per-request series are looked up once per label set and kept: `labels()` takes a lock and
builds a key each call, and every request touches three of them.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("aistack_gateway_requests", "Requests answered, by route and HTTP status.",
                                ["route", "status"], registry=r)
        self.latency = Histogram("aistack_gateway_request_seconds",
                                 "Whole-request latency (to the last byte).",
                                 ["route"], buckets=_LATENCY, registry=r)
        self.steps = Histogram("aistack_gateway_step_seconds", "Latency of one step of a request.",
                               ["step"], buckets=_LATENCY, registry=r)
        self.rail_blocks = Counter("aistack_gateway_rail_blocks", "Requests blocked by a rail.",
                                   ["side", "rail"], registry=r)
        self.rail_errors = Counter("aistack_gateway_rail_errors", "Rails engine failures (fail-open or 503).",
                                   ["side"], registry=r)
        self.upstream_errors = Counter("aistack_gateway_upstream_errors", "Failed calls to a model upstream.",
                                       ["upstream", "kind"], registry=r)
        self.fallbacks = Counter("aistack_gateway_fallbacks", "Requests served by the fallback upstream.",
                                 registry=r)
        self.upstream_circuit_open = Gauge(
            "aistack_gateway_upstream_circuit_open",
            "1 while the upstream's circuit breaker keeps requests from it (open, or one probe in flight).",
            ["upstream"], registry=r)
        self.tool_calls = Counter("aistack_gateway_tool_calls", "Agent tool calls, by tool and outcome.",
                                  ["tool", "outcome"], registry=r)
        self.traces_dropped = Counter(
            "aistack_gateway_traces_dropped",
            "Traces not exported because the export queue was full or export failed.", ["reason"], registry=r)
        self.traces_exported = Counter("aistack_gateway_traces_exported", "Traces handed to MLflow.",
                                       registry=r)
        self.config_reloads = Counter("aistack_gateway_config_reloads", "Config reloads, by result.",
                                      ["result"], registry=r)
        self.config_info = Gauge("aistack_gateway_config_info", "The config in use (value 1).",
                                 ["name", "stage", "config_hash"], registry=r)
        # the self-hosted model's demand (runtime/gateway/demand.py): what its autoscaler scales on
        self.model_demand = Gauge("aistack_gateway_model_demand",
                                  "Requests of this gateway in flight to the self-hosted model or held "
                                  "for it.",
                                  ["stack", "stack_namespace"], registry=r)
        self.model_held = Gauge("aistack_gateway_model_held",
                                "Requests held while the model has no ready replica (scaled to zero, "
                                "starting).",
                                ["stack", "stack_namespace"], registry=r)
        # each version of the model under a canary split (runtime/gateway/canary.py); version is
        # "stable" or "canary", so the label set stays two
        self.version_requests = Counter("aistack_gateway_model_version_requests",
                                        "Model calls per version of the model (stable, canary).",
                                        ["version"], registry=r)
        self.version_errors = Counter("aistack_gateway_model_version_errors",
                                      "Model calls per version that failed (5xx, timeout, or the fallback "
                                      "answered instead).", ["version"], registry=r)
        self.version_latency = Histogram("aistack_gateway_model_version_seconds",
                                         "Model call latency per version (a JSON answer whole, a stream "
                                         "to its first event).", ["version"], buckets=_LATENCY, registry=r)
        # the model engine's own numbers (vLLM's /metrics), read by runtime/gateway/engine_metrics.py
        self.engine_available = Gauge("aistack_engine_metrics_available",
                                      "1 when the last read of the upstream engine's /metrics succeeded.",
                                      ["upstream"], registry=r)
        self.engine_running = Gauge("aistack_engine_requests_running",
                                    "Requests the engine is running (vllm:num_requests_running).",
                                    ["upstream"], registry=r)
        self.engine_waiting = Gauge("aistack_engine_requests_waiting",
                                    "Requests queued in the engine (vllm:num_requests_waiting).",
                                    ["upstream"], registry=r)
        self.engine_kv_cache = Gauge("aistack_engine_kv_cache_usage_ratio",
                                     "Share of the engine's KV cache in use, 0-1 (vllm:kv_cache_usage_perc).",
                                     ["upstream"], registry=r)
        self.engine_prefix_hits = Gauge(
            "aistack_engine_prefix_cache_hit_ratio",
            "Prompt tokens found in the engine's prefix cache over those looked up, since the engine "
            "started; absent before its first lookup.", ["upstream"], registry=r)
        self._series: dict[tuple[str | int, ...], Any] = {}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """One answered request: its count by route and status, and its latency by route."""
        count = self._series.get(("requests", route, status))
        if count is None:
            count = self._series[("requests", route, status)] = self.requests.labels(route, str(status))
        latency = self._series.get(("latency", route))
        if latency is None:
            latency = self._series[("latency", route)] = self.latency.labels(route)
        count.inc()
        latency.observe(seconds)

    def observe_step(self, step: str, seconds: float) -> None:
        series = self._series.get(("step", step))
        if series is None:
            series = self._series[("step", step)] = self.steps.labels(step)
        series.observe(seconds)
