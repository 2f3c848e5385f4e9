"""The README's main job: run examples/rag.yaml locally and ask it one question.

It starts `aistack up` (gateway, embedded Qdrant with examples/docs ingested, a local MLflow,
guardrails in-process; the model is the spec's OpenAI endpoint when its key is set, else the
built-in offline model, labelled as such), asks a question through the official `openai` SDK,
prints the answer with its citations and where the trace is, and stops everything.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from openai import OpenAI

from aistack.api.conventions import experiment_name
from aistack.api.manifests import load_stack

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "rag.yaml"
QUESTION = "How do I remove the chunks of deleted files from the collection?"
START_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(proc: subprocess.Popen[bytes], running_file: Path) -> dict:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"aistack up exited with {proc.returncode}")
        try:
            info = json.loads(running_file.read_text())
            if info.get("pid") == proc.pid and httpx.get(f"{info['gateway_url']}/readyz", timeout=2).status_code == 200:
                return info
        except (OSError, ValueError, httpx.HTTPError):
            pass
        time.sleep(1)
    raise SystemExit(f"aistack up did not become ready within {START_TIMEOUT_S} s")


def main() -> int:
    stack = load_stack(MANIFEST)
    state = HERE / ".aistack" / stack.name
    port = free_port()
    print(f"$ aistack up {MANIFEST.relative_to(HERE.parent)} --port {port}", flush=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "aistack.cli", "up", str(MANIFEST), "--port", str(port)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        info = wait_until_serving(proc, state / "up.json")
        client = OpenAI(base_url=f"{info['gateway_url']}/v1", api_key=os.environ.get("AISTACK_API_KEY", "local"))
        model = client.models.list().data[0].id
        print(f"\nQ: {QUESTION}  (model: {model})", flush=True)
        answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": QUESTION}])
        print(f"\nA: {answer.choices[0].message.content}\n")
        citations = (answer.model_extra or {}).get("citations") or []
        for i, cite in enumerate(citations, 1):
            print(f"  [{i}] {cite.get('source')}  {cite.get('title') or ''}  score={cite.get('score', 0):.3f}")
        if not citations:
            print("  (no citations: nothing relevant was retrieved)")
        if info.get("mlflow_url"):
            observability = stack.spec.observability
            experiment = experiment_name(namespace=stack.namespace, name=stack.name,
                                         configured=observability.experiment if observability else None)
            print(f"\nTrace: MLflow UI at {info['mlflow_url']} -> experiment '{experiment}' -> Traces")
        return 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
