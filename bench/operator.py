"""Operator benchmark: N AIStacks applied at once to the emulated API server.

    .venv/bin/python bench/operator.py [--sizes 1,10,100,1000] [--latency-samples 50]

The operator runs as a real subprocess (`python -m aistack.operator`, kubeconfig pointing at
the emulator), so its RSS is its own. For each N it reports: seconds until every stack is
Ready (all children created and reported available by the simulated kubelet), API requests
and writes per stack, the operator's CPU and peak RSS, and the writes of a full no-op resync:
the operator is restarted, and its resume pass reconciles every converged stack again (it
must write nothing; the drift timer does the same pass every 5 minutes). Then p50/p99 of apply -> all children
created, for single stacks applied one after another. Numbers are from the emulator, not a
real API server: they measure the operator's own cost and request counts, not etcd.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from aistack.api.conventions import LABEL_INSTANCE
from aistack.api.manifests import parse_stack
from aistack.operator.render import render
from aistack.runtime.local.ports import free_port
from aistack.testing.cluster import Cluster
from aistack.testing.emulator import CHILD_PLURALS, EmulatorThread

ROOT = Path(__file__).resolve().parents[1]


def bench_stack(name: str, namespace: str) -> dict[str, Any]:
    """The production example without retrieval (no Qdrant here): vLLM, guardrails sidecar,
    MLflow, gateway with HPA: 10 children, plus the manifest ConfigMap and the evaluation Job
    once the gateway is ready: 12."""
    doc = yaml.safe_load((ROOT / "examples" / "production.yaml").read_text())
    doc["metadata"].update(name=name, namespace=namespace)
    doc["spec"].pop("retrieval")
    doc["spec"]["orchestration"]["promptTemplate"] = "Customer question: {question}"
    return doc


def kubeconfig(url: str, folder: Path) -> Path:
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": url, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "emu", "user": {"token": "bench"}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
    }))
    return path


def start_operator(url: str, folder: Path, *, liveness_port: int | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig(url, folder))}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    liveness = f"http://127.0.0.1:{liveness_port}/healthz" if liveness_port else ""
    return subprocess.Popen(
        [sys.executable, "-m", "aistack.operator", "--standalone", f"--liveness={liveness}"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(folder / "operator.log", "ab"))


def reconcile_runs(port: int) -> int:
    """Reconciles the operator has run, from its liveness endpoint (kopf probe results)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return int(json.load(response)["reconciles"]["runs"])
    except (OSError, ValueError, KeyError):
        return -1


def stop(operator: subprocess.Popen[bytes]) -> None:
    operator.terminate()
    try:
        operator.wait(15)
    except subprocess.TimeoutExpired:
        operator.kill()
        operator.wait(15)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def wait_operator_ready(cluster: Cluster, namespace: str) -> None:
    """Apply a probe stack and wait until it is Ready: the operator is up and watching."""
    cluster.add_namespace(namespace)
    cluster.apply_stack(bench_stack("probe", namespace))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if phase(cluster, namespace, "probe") == "Ready":
            return
        time.sleep(0.05)
    raise RuntimeError("operator did not reconcile the probe stack within 60 s")


def phase(cluster: Cluster, namespace: str, name: str) -> str | None:
    obj = cluster.emulator.find("aistacks", namespace, name)
    return ((obj or {}).get("status") or {}).get("phase")


def ready_count(cluster: Cluster, namespace: str) -> int:
    """Stacks with phase Ready, read in place (no copies: polling shares the CPUs being measured)."""
    return sum(1 for (resource, ns, _), obj in cluster.emulator.snapshot()
               if resource.plural == "aistacks" and ns == namespace and not obj.deleted
               and (obj.raw.get("status") or {}).get("phase") == "Ready")


def child_count(cluster: Cluster, namespace: str, name: str) -> int:
    """Children of one stack, counted in place: the poll runs every 2 ms beside the emulator's
    thread, and copying every stored object each time would slow the emulator it measures."""
    return sum(1 for (resource, ns, _), obj in cluster.emulator.snapshot()
               if ns == namespace and resource.plural in CHILD_PLURALS and not obj.deleted
               and (obj.raw.get("metadata", {}).get("labels") or {}).get(LABEL_INSTANCE) == name)


def run_size(n: int, timeout: float) -> dict[str, Any]:
    with EmulatorThread() as thread, tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(thread)
        operator = start_operator(thread.url, Path(tmp))
        try:
            wait_operator_ready(cluster, "warmup")
            namespace = f"bench-{n}"
            cluster.add_namespace(namespace)
            docs = [bench_stack(f"s{i:04d}", namespace) for i in range(n)]
            since = len(cluster.emulator.log)
            cpu_before = cpu_seconds(operator.pid)
            start = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(cluster.apply_stack, docs))
            converged = None
            poll = min(0.5, max(0.05, n / 1000))  # polling copies every stack: keep it off the CPU
            while time.monotonic() - start < timeout:
                if ready_count(cluster, namespace) == n:
                    converged = time.monotonic() - start
                    break
                time.sleep(poll)
            cpu = cpu_seconds(operator.pid) - cpu_before
            time.sleep(0.5)
            log = cluster.emulator.log[since:]
            ours = [(m, p) for m, p in log if not (m == "POST" and p.endswith("/aistacks"))]
            writes = [(m, p) for m, p in ours if m in ("POST", "PATCH", "PUT", "DELETE")]
            rss, peak = rss_mib(operator.pid)
            # The no-op resync: a restarted operator reconciles every stack once more (resume).
            stop(operator)
            resync_since = len(cluster.emulator.log)
            port = free_port()
            operator = start_operator(thread.url, Path(tmp), liveness_port=port)
            deadline = time.monotonic() + timeout
            while reconcile_runs(port) < n + 1 and time.monotonic() < deadline:  # + the probe stack
                time.sleep(0.5)
            resynced = reconcile_runs(port) >= n + 1
            time.sleep(1)
            resync_writes = len(cluster.emulator.writes(resync_since)) if resynced else None
            return {"n": n, "converged_s": converged, "cpu_ms_per_stack": 1000 * cpu / n,
                    "requests_per_stack": len(ours) / n,
                    "writes_per_stack": len(writes) / n, "resync_writes": resync_writes, "rss_mib": rss,
                    "peak_rss_mib": peak}
        finally:
            stop(operator)


def run_latency(samples: int) -> list[float]:
    """Seconds from POST of one AIStack to all its children existing, one stack at a time."""
    with EmulatorThread() as thread, tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(thread)
        operator = start_operator(thread.url, Path(tmp))
        try:
            wait_operator_ready(cluster, "warmup")
            namespace = "latency"
            cluster.add_namespace(namespace)
            out = []
            for i in range(samples):
                doc = bench_stack(f"l{i:03d}", namespace)
                want = len(render(parse_stack(copy.deepcopy(doc)), version="x").manifests)
                start = time.monotonic()
                cluster.apply_stack(doc)
                while child_count(cluster, namespace, doc["metadata"]["name"]) < want:
                    time.sleep(0.002)
                out.append(time.monotonic() - start)
            return out
        finally:
            stop(operator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,10,100,1000")
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    print(f"{'N':>5} {'converged s':>12} {'op CPU ms/stack':>16} {'req/stack':>10} {'writes/stack':>13} "
          f"{'resync writes':>14} {'RSS MiB':>8} {'peak MiB':>9}", flush=True)
    for n in args.sizes.split(","):
        r = run_size(int(n), args.timeout)
        converged = f"{r['converged_s']:.2f}" if r["converged_s"] is not None else "timeout"
        resync = str(r["resync_writes"]) if r["resync_writes"] is not None else "timeout"
        print(f"{r['n']:>5} {converged:>12} {r['cpu_ms_per_stack']:>16.0f} {r['requests_per_stack']:>10.1f} "
              f"{r['writes_per_stack']:>13.1f} "
              f"{resync:>14} {r['rss_mib']:>8.0f} {r['peak_rss_mib']:>9.0f}", flush=True)
    if args.latency_samples:
        lat = sorted(run_latency(args.latency_samples))
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
        print(f"\napply -> all children created, single stacks (n={len(lat)}): "
              f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
