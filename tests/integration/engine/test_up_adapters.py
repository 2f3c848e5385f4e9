"""`aistack up` serves the spec's LoRA adapters on the real vLLM engine: two peft adapters of the
offline model, given as paths relative to the manifest, are loaded by the runner's adapter agent,
listed in the gateway's /v1/models and answer differently from the base at temperature 0; an
`hf://` adapter is not fetched (offline) and is reported Failed with the reason, in the panel and in
the state folder, while the others serve. Run under the engine lock."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from aistack.runtime.engine.locate import EngineLocation
from aistack.runtime.local.offline_model import OFFLINE_MODEL_NAME
from aistack.runtime.local.offline_weights import is_prepared, weights_folder
from aistack.runtime.local.ports import free_port
from aistack.testing.processes import wait_alive_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ENGINE_ARGV = "vllm.entrypoints.openai.api_server"


def answer(url: str, model: str) -> str:
    """A text completion through the gateway (the random adapters move a raw prompt's greedy answer
    more surely than a chat-templated one: measured, a chat answer of adapter a equalled the base's)."""
    response = httpx.post(f"{url}/v1/completions", timeout=120, json={
        "model": model, "temperature": 0, "max_tokens": 12, "prompt": "The capital of France is"})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == model
    return str(response.json()["choices"][0]["text"])


def test_up_serves_path_adapters_and_reports_a_remote_one_failed(engine: EngineLocation,
                                                                 tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from aistack.testing.lora import make_adapter

    if not is_prepared(weights_folder()):
        pytest.skip(f"the offline weights are not prepared in {weights_folder()}: "
                    "run `aistack engine install`")
    make_adapter(weights_folder(), tmp_path / "adapters" / "a", seed=1)
    make_adapter(weights_folder(), tmp_path / "adapters" / "b", seed=2)
    manifest = tmp_path / "lora.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "lora"},
        "spec": {"model": {"provider": "vllm", "name": "Qwen/Qwen2.5-0.5B-Instruct", "vllm": {
            "lora": {"maxRank": 8, "maxAdapters": 4},
            "adapters": [{"name": "a", "source": "adapters/a"}, {"name": "b", "source": "adapters/b"},
                         {"name": "remote", "source": "hf://acme/remote-lora@v1"}]}}}}))
    port, state = free_port(), tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-m", "aistack.cli", "up", str(manifest), "--port", str(port),
                             "--state", str(state), "--engine", "vllm", "--offline"],
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    engines: list[str] = []
    try:
        wait_alive_until((state / "up.json").exists, proc, timeout_s=600, what="aistack up did not start")
        engines = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", ENGINE_ARGV], capture_output=True,
                                 text=True).stdout.split()
        listed = [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]]
        assert listed[:4] == [OFFLINE_MODEL_NAME, "a", "b", "remote"], listed
        answers = {m: answer(url, m) for m in (OFFLINE_MODEL_NAME, "a", "b")}
        print(answers)
        assert len(set(answers.values())) == 3, answers
        report = json.loads((state / "adapters-0.json").read_text())["adapters"]
        phases = {s["name"]: (s["phase"], s["reason"]) for s in report}
        assert phases["a"] == ("Loaded", None) and phases["b"] == ("Loaded", None)
        assert phases["remote"][0] == "Failed" and "is not fetched here" in phases["remote"][1]
        refused = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
            "model": "remote", "messages": [{"role": "user", "content": "hi"}]})
        assert refused.status_code == 503  # listed by the spec, not loaded: not the client's mistake
        assert refused.json()["error"]["code"] == "adapter_unavailable"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert re.search(r"│ adapters +a Loaded, b Loaded, remote Failed", output), output
    left = subprocess.run(["pgrep", "-f", ENGINE_ARGV], capture_output=True, text=True).stdout.split()
    assert not set(left) & set(engines)
