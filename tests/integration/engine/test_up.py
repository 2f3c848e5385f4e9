"""`aistack up examples/rag.yaml` on the real vLLM engine (a copy of the example, no MLflow): the
offline model is served by vLLM, its answer quotes a sentence of a cited document, the engine is
restarted when it is killed (requests meanwhile fail cleanly), and Ctrl-C leaves no engine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from openai import OpenAI

from aistack.runtime.engine.locate import EngineLocation
from aistack.runtime.local.offline_model import OFFLINE_MODEL_NAME
from aistack.runtime.local.offline_weights import is_prepared, weights_folder
from aistack.runtime.local.ports import free_port

pytestmark = pytest.mark.slow
QUESTION = "How do I remove the chunks of deleted files from the collection?"


def wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{what}:\n{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.5)


def test_up_serves_the_offline_model_on_vllm_extractively_and_restarts_a_killed_engine(
        engine: EngineLocation, examples: Path, tmp_path: Path) -> None:
    if not is_prepared(weights_folder()):
        pytest.skip(f"the offline weights are not prepared in {weights_folder()}: "
                    "run `aistack engine install`")
    shutil.copytree(examples / "docs", tmp_path / "docs")
    doc = yaml.safe_load((examples / "rag.yaml").read_text())
    del doc["spec"]["observability"]  # no MLflow: this test is about the model
    manifest = tmp_path / "rag.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    port, state = free_port(), tmp_path / "state"
    keys = ("AISTACK_SECRET_OPENAI_API_KEY", "OPENAI_API_KEY")  # unset: the spec's endpoint is not used
    env = {k: v for k, v in os.environ.items() if k not in keys}
    proc = subprocess.Popen([sys.executable, "-m", "aistack.cli", "up", str(manifest), "--port", str(port),
                             "--state", str(state), "--engine", "vllm"],
                            env={**env, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for((state / "up.json").exists, 600, "aistack up did not start", proc)
        assert json.loads((state / "up.json").read_text())["model"] == OFFLINE_MODEL_NAME
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="local", max_retries=0)
        answer = client.chat.completions.create(model=OFFLINE_MODEL_NAME,
                                                messages=[{"role": "user", "content": QUESTION}])
        text = answer.choices[0].message.content or ""
        quoted, _, label = text.partition(" [")
        number = int(label.split("]", 1)[0])
        cited = (answer.model_extra or {})["citations"][number - 1]["source"]
        assert " ".join(quoted.split()) in " ".join((tmp_path / cited).read_text().split())
        assert "Extractive answer" in text

        engines = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "vllm.entrypoints.openai.api_server"],
                                 capture_output=True, text=True).stdout.split()
        assert engines, "no vLLM engine process"
        for pid in engines:
            os.kill(int(pid), signal.SIGKILL)
        with pytest.raises(openai.APIStatusError) as down:  # a clean OpenAI error while the engine is down
            client.chat.completions.create(model=OFFLINE_MODEL_NAME,
                                           messages=[{"role": "user", "content": QUESTION}])
        assert down.value.status_code in (502, 503), down.value.message
        ready = f"http://127.0.0.1:{port}/readyz"
        wait_for(lambda: httpx.get(ready, timeout=5).status_code == 200, 300,
                 "the engine was not restarted", proc)
        again = client.chat.completions.create(model=OFFLINE_MODEL_NAME,
                                               messages=[{"role": "user", "content": QUESTION}])
        assert again.choices[0].message.content == text  # greedy: the same quotation

        # killed again, then Ctrl-C while it restarts (~30 s): the stop does not wait for the engine
        restarted = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "vllm.entrypoints.openai.api_server"],
                                   capture_output=True, text=True).stdout.split()
        engines += restarted
        for pid in restarted:
            os.kill(int(pid), signal.SIGKILL)
        time.sleep(4)  # the refresh loop (every 2 s) has begun the restart
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        proc.wait(timeout=60)
        assert time.monotonic() - started < 20
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "engine      vLLM 0.32.0 (cpu build)" in output or "vLLM 0.32.0 (cuda build)" in output
    left = subprocess.run(["pgrep", "-f", "vllm.entrypoints.openai.api_server"], capture_output=True,
                          text=True)
    assert not set(left.stdout.split()) & set(engines)
