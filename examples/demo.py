"""The README's main job: run examples/rag.yaml locally and ask it one question.

It starts `aistack up` (gateway, embedded Qdrant with examples/docs ingested, a local MLflow,
guardrails in-process; the model is the spec's OpenAI endpoint when its key is set, else the
built-in offline model on the vLLM engine (transformers where the engine is not installed), whose
answers are extractive: quoted from the cited documents), asks a question through the official
`openai` SDK and prints the answer with its citations and where its trace is. On an interactive terminal
the stack keeps serving, so the trace link opens, until Ctrl-C; elsewhere (CI, a pipe) it
stops and prints the command that reopens the trace UI (`aistack ui`).

`--manifest` runs another manifest the same way (tests run the demo on a copy of rag.yaml
whose model is a test server); `--mlflow-port` is passed on to `aistack up`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from openai import OpenAI

from aistack.api.conventions import experiment_name
from aistack.api.manifests import load_stack
from aistack.runtime.local.ports import free_port

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "rag.yaml"
QUESTION = "How do I remove the chunks of deleted files from the collection?"
START_TIMEOUT_S = 600
STOP_TIMEOUT_S = 60


def wait_until_serving(proc: subprocess.Popen[bytes], running_file: Path) -> dict:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"aistack up exited with {proc.returncode}")
        try:
            info = json.loads(running_file.read_text())
            if info.get("pid") == proc.pid and httpx.get(f"{info['gateway_url']}/readyz",
                                                         timeout=2).status_code == 200:
                return info
        except (OSError, ValueError, httpx.HTTPError):
            pass
        time.sleep(1)
    raise SystemExit(f"aistack up did not become ready within {START_TIMEOUT_S} s")


def interactive() -> bool:
    """A person at a terminal can open the link and press Ctrl-C; CI and pipes cannot."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """One SIGINT (a second Ctrl-C while it stops is passed on: `aistack up` then kills its children)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    while True:
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
            return
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return


def display(path: Path) -> str:
    """A path as the user can type it from here: relative when under the current folder."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def ui_command(manifest: Path, mlflow_port: str | None) -> str:
    """The exact command that reopens the trace UI on what this run recorded."""
    script = Path(sys.executable).parent / "aistack"
    words = [display(script)] if script.exists() else [display(Path(sys.executable)), "-m", "aistack.cli"]
    words += ["ui", display(manifest)]
    if mlflow_port:
        words += ["--port", mlflow_port]
    return shlex.join(words)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST,
                        help="the AIStack manifest (default: %(default)s)")
    parser.add_argument("--mlflow-port", help="port of the local MLflow UI (default: aistack up's)")
    parser.add_argument("--engine", choices=("auto", "vllm", "transformers"), default="auto",
                        help="what serves the offline model (aistack up --engine; default: %(default)s)")
    args = parser.parse_args(argv)
    manifest = args.manifest.resolve()
    stack = load_stack(manifest)
    state = manifest.parent / ".aistack" / stack.name
    port = free_port()
    extra = ["--mlflow-port", args.mlflow_port] if args.mlflow_port else []
    extra += ["--engine", args.engine] if args.engine != "auto" else []
    print(f"$ aistack up {shlex.join([display(manifest), '--port', str(port), *extra])}", flush=True)
    # its own session: a Ctrl-C reaches only this script, which stops `aistack up` with one SIGINT
    proc = subprocess.Popen(
        [sys.executable, "-m", "aistack.cli", "up", str(manifest), "--port", str(port), *extra],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, start_new_session=True,
    )
    try:
        info = wait_until_serving(proc, state / "up.json")
        client = OpenAI(base_url=f"{info['gateway_url']}/v1",
                        api_key=os.environ.get("AISTACK_API_KEY", "local"))
        model = client.models.list().data[0].id
        print(f"\nQ: {QUESTION}  (model: {model})", flush=True)
        answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": QUESTION}])
        print(f"\nA: {answer.choices[0].message.content}\n")
        citations = (answer.model_extra or {}).get("citations") or []
        for i, cite in enumerate(citations, 1):
            print(f"  [{i}] {cite.get('source')}  {cite.get('title') or ''}  "
                  f"score={cite.get('score', 0):.3f}")
        if not citations:
            print("  (no citations: nothing relevant was retrieved)")
        observability = stack.spec.observability
        experiment = experiment_name(namespace=stack.namespace, name=stack.name,
                                     configured=observability.experiment if observability else None)
        if interactive():
            if info.get("mlflow_url"):
                print(f"\nTrace: MLflow UI at {info['mlflow_url']} -> experiment '{experiment}' -> Traces")
            print("\nThe stack keeps running: open the link; Ctrl-C to stop.", flush=True)
            try:
                return proc.wait()  # `aistack up` ended on its own: its own message says why
            except KeyboardInterrupt:
                pass
        elif info.get("mlflow_url"):
            stop(proc)
            print(f"\nTrace: experiment '{experiment}' -> Traces in the MLflow UI. The stack has stopped; "
                  f"reopen its UI with:\n  {ui_command(manifest, args.mlflow_port)}", flush=True)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        stop(proc)


if __name__ == "__main__":
    raise SystemExit(main())
