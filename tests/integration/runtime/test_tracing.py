"""Traces reach a real MLflow server with their spans and tags; MLflow down costs no request."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from aistack.api.gateway_config import TracingConfig
from aistack.runtime.core.metrics import GatewayMetrics
from aistack.runtime.local.ports import free_port
from aistack.runtime.retrieval.contracts import Passage
from aistack.runtime.tracing import RequestTrace, Tracer
from aistack.testing.gateway import ListRetriever, base_config, run_gateway


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # first start migrates the sqlite store; slow on a busy machine
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        stop_group(proc)
        raise RuntimeError("mlflow server did not become healthy in 180 s")
    try:
        yield url, proc
    finally:
        stop_group(proc)


def stop_group(proc):
    """Stop `mlflow server` and every process it started: its uvicorn, job runner and huey
    consumers outlive a plain terminate of the parent (huey ignores SIGTERM)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    return None


@pytest.mark.slow
def test_traces_arrive_with_spans_and_tags_then_mlflow_goes_down(upstream, mlflow_server):
    import mlflow

    url, proc = mlflow_server
    retriever = ListRetriever([Passage(text="Traces go to MLflow.", source="obs.md", score=0.7)])
    cfg = base_config(upstream.base_url, stage="staging",
                      tracing={"trackingUri": url, "experiment": "aistack-test", "queueSize": 8},
                      guardrails={"rails": {"input": ["pii_mask"], "output": ["pii_mask"]},
                                  "engine": "inprocess"},
                      retrieval={"collection": "c", "distance": "Cosine", "topK": 1, "maxContextTokens": 100,
                                 "embedder": {"provider": "local", "model": "e", "dimension": 8}})
    with run_gateway(cfg, retriever=retriever) as gw:
        client = gw.client()
        client.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "trace me"}])
        list(client.chat.completions.create(model="demo-model", stream=True,
                                            messages=[{"role": "user", "content": "[[say:streamed trace]]"}]))
        mlf = mlflow.MlflowClient(tracking_uri=url)
        experiment = wait_for(lambda: mlf.get_experiment_by_name("aistack-test"))
        traces = wait_for(lambda: _complete(mlf.search_traces(locations=[experiment.experiment_id])))
        assert traces, "no traces arrived"
        by_question = {_root(t).inputs["question"]: t for t in traces}
        trace = by_question["trace me"]
        tags = trace.info.tags
        assert (tags["aistack.stack"], tags["aistack.stage"], tags["aistack.config_hash"],
                tags["aistack.model"]) == (
            "demo", "staging", "0123456789abcdef", "demo-model")
        names = [s.name for s in trace.data.spans]
        assert _root(trace).name == "chat.completions"
        assert {"rails.input.fast", "retrieval", "prompt", "generation", "rails.output.fast"} <= set(names)
        generation = next(s for s in trace.data.spans if s.name == "generation")
        assert generation.attributes["usage"]["completion_tokens"] > 0
        assert next(s for s in trace.data.spans if s.name == "retrieval").outputs == [{"source": "obs.md",
                                                                                       "score": 0.7}]
        streamed = by_question["[[say:streamed trace]]"]
        assert _root(streamed).outputs == {"answer": "streamed trace"}

        stop_group(proc)
        started = time.perf_counter()
        for i in range(30):
            out = client.chat.completions.create(model="demo-model",
                                                 messages=[{"role": "user", "content": f"down {i}"}])
            assert out.choices[0].message.content.startswith("Echo:")
        assert (time.perf_counter() - started) / 30 < 0.5  # no request waits for MLflow
        assert wait_for(lambda: "aistack_gateway_traces_dropped_total" in gw.metrics()
                        and _dropped(gw.metrics()) > 0)
        assert httpx.get(f"{gw.url}/readyz").status_code == 200  # MLflow is not a readiness dependency


def _root(trace):
    return next(s for s in trace.data.spans if s.parent_id is None)


def _complete(traces):
    """Both traces with all their spans (the server may list a trace before its spans land)."""
    done = [t for t in traces if any(s.parent_id is None for s in t.data.spans)
            and any(s.name == "generation" for s in t.data.spans)]
    return done if len(done) >= 2 else None


def _dropped(metrics_text: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics_text.splitlines()
               if line.startswith("aistack_gateway_traces_dropped_total"))


def test_full_queue_drops_and_counts_without_blocking():
    metrics = GatewayMetrics()
    tracer = Tracer(config=None, tags={}, metrics=metrics)
    # no export thread
    tracer.config = TracingConfig(tracking_uri="http://127.0.0.1:1", experiment="x", queue_size=1)
    started = time.perf_counter()
    for _ in range(5):
        trace = tracer.start(name="t", inputs={})
        assert isinstance(trace, RequestTrace)
        trace.finish(outputs={})
        tracer.submit(trace)
    assert time.perf_counter() - started < 0.05
    assert metrics.traces_dropped.labels("queue_full")._value.get() == 4


def test_sampling_zero_traces_nothing():
    tracer = Tracer(config=None, tags={}, metrics=GatewayMetrics())
    tracer.config = TracingConfig(tracking_uri="http://127.0.0.1:1", experiment="x", sampling=0.0)
    assert not tracer.start(name="t", inputs={}).enabled
