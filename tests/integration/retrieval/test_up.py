"""`aistack up` as a subprocess: queried with the openai SDK, tenants isolated against a forged
header, evaluated, stopped with Ctrl-C, restarted with its data still there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion
from typer.testing import CliRunner

from aistack.cli.main import app
from aistack.runtime.local.ports import free_port
from aistack.testing.documents import make_damaged_pdf
from aistack.testing.openai_server import run_openai_server
from aistack.testing.processes import wait_alive_until

KEYS_ENV = "AISTACK_SECRET_GW_KEYS_KEYS"
MODEL_KEY_ENV = "AISTACK_SECRET_OPENAI_API_KEY"


@pytest.fixture(scope="module")
def fake_model() -> Iterator[str]:
    with run_openai_server(models=["gpt-4o-mini"]) as server:
        yield f"http://{server.host}:{server.port}/v1"


def start_up(manifest: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, MODEL_KEY_ENV: "test-key", KEYS_ENV: "key-acme acme\nkey-globex globex\nkey-anon\n",
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "aistack.cli", "up", str(manifest), "--port", str(port),
                             *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    running = manifest.parent / ".aistack" / "docs-assistant" / "up.json"
    wait_alive_until(running.exists, proc, timeout_s=180, what="aistack up did not start")
    return proc


def stop_up(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    return output


def ask(port: int, key: str, question: str, **headers: str) -> ChatCompletion:
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, default_headers=headers or None)
    return client.chat.completions.create(model="gpt-4o-mini",
                                          messages=[{"role": "user", "content": question}])


def test_up_serves_isolates_tenants_stops_cleanly_and_keeps_data(stack_factory, example_docs: Path,
                                                                 tmp_path: Path,
                                                                 fake_model: str, mlflow_server: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = stack_factory(tenant_field="tenant", extra={
        "gateway": {"apiKeysSecretRef": {"name": "gw-keys", "key": "keys"}},
        "evaluation": {"dataset": {"path": "eval.jsonl"},
                       "thresholds": {"error_rate": {"max": 0}, "retrieval_hit_rate": {"min": 0.5}}},
    })
    import yaml

    stack = yaml.safe_load(manifest.read_text())
    stack["spec"]["model"]["openai"]["baseUrl"] = fake_model
    manifest.write_text(yaml.safe_dump(stack))
    for tenant, code in (("acme", "BLUEBIRD"), ("globex", "REDFOX")):
        folder = tmp_path / tenant
        folder.mkdir()
        (folder / "plan.md").write_text(f"# Launch plan\n\nThe launch code name is {code}.\n")
        result = CliRunner().invoke(app, ["ingest", str(manifest), str(folder), "--tenant", tenant])
        assert result.exit_code == 0, result.output

    (example_docs / "damaged.pdf").write_bytes(make_damaged_pdf(["Qdrant keeps the vectors on disk."]))
    port = free_port()
    proc = start_up(manifest, port)
    state = manifest.parent / ".aistack" / "docs-assistant"
    info = json.loads((state / "up.json").read_text())
    assert info["model"] == "gpt-4o-mini" and info["offline_model"] is False
    own_mlflow = info["mlflow_url"]

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="key-anon")
    assert {m.id for m in client.models.list().data} == {"gpt-4o-mini",
                                                         "sentence-transformers/all-MiniLM-L6-v2"}
    answer = ask(port, "key-anon", "What does --prune do?")
    sources = [c["source"] for c in answer.model_extra["citations"]]
    assert "docs/ingestion.md" in sources and "--prune" in answer.choices[0].message.content

    # the key says acme; a forged header asking for globex changes nothing
    forged = ask(port, "key-acme", "What is the launch code name?", **{"X-Tenant": "globex"})
    text = forged.choices[0].message.content
    assert "BLUEBIRD" in text and "REDFOX" not in text
    assert "acme/plan.md" in " ".join(c["source"] for c in forged.model_extra["citations"])
    anonymous = ask(port, "key-anon", "What is the launch code name?").choices[0].message.content
    assert "BLUEBIRD" not in anonymous and "REDFOX" not in anonymous

    # the running stack owns the store: a second writer is told so instead of corrupting it
    result = CliRunner().invoke(app, ["ingest", str(manifest), str(tmp_path / "acme"), "--tenant", "acme"])
    assert result.exit_code == 2
    assert f"another `aistack up` (pid {proc.pid}) is running this stack" in result.output

    output = stop_up(proc)
    assert "stopped; data kept" in output
    # startup ingestion's own words, in the panel
    assert "docs/damaged.pdf: damaged PDF, read after" in output
    assert "wrong pointing object" not in output and "pypdf" not in output
    assert not (state / "up.json").exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{own_mlflow}/health", timeout=2)  # the MLflow child went with it

    proc = start_up(manifest, port, "--no-ingest", "--tracking-uri", mlflow_server)
    try:
        again = ask(port, "key-globex", "What is the launch code name?")
        assert "REDFOX" in again.choices[0].message.content  # data survived the restart, no re-ingestion
        (manifest.parent / "eval.jsonl").write_text("\n".join(json.dumps(q) for q in [
            {"question": "What does --prune do?", "reference": "It removes the chunks of deleted files.",
             "sources": ["ingestion.md"]},
            {"question": "Which embedding model is the default?", "sources": ["retrieval.md"]},
        ]) + "\n")
        monkeypatch.setenv("AISTACK_API_KEY", "key-anon")
        result = CliRunner().invoke(app, ["eval", str(manifest)])
        assert result.exit_code == 0, result.output
        assert "retrieval_hit_rate │ 1" in result.output and mlflow_server in result.output
    finally:
        stop_up(proc)
