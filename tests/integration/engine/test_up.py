"""`aistack up` on the real vLLM engine (copies of the examples, no MLflow): with retrieval, the offline
model served by vLLM answers with a sentence of a cited document; without, it generates, serves the
OpenAI API's calls (responses, completions, structured output, tools) with no model key, and an
engine killed mid-stream gives the client a clean error and is restarted (the same greedy answer
after), and Ctrl-C while it restarts leaves no engine; with `--replicas 2`, two engines, the gateway
routing over them by prefix as over a cluster's replicas (each prefix on one engine, different
prefixes on both), an engine killed routed around at once (no request fails) and then restarted."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest
import yaml
from openai import OpenAI

from aistack.runtime.engine.locate import EngineLocation
from aistack.runtime.local.offline_model import OFFLINE_MODEL_NAME
from aistack.runtime.local.offline_weights import is_prepared, weights_folder
from aistack.runtime.local.ports import free_port
from aistack.testing.processes import wait_alive_until

pytestmark = pytest.mark.slow
QUESTION = "How do I remove the chunks of deleted files from the collection?"
ENGINE_ARGV = "vllm.entrypoints.openai.api_server"


def wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen[str]) -> None:
    wait_alive_until(predicate, proc, timeout_s=timeout_s, what=what, poll_s=0.5)


def engines_of(proc: subprocess.Popen[str]) -> list[str]:
    return subprocess.run(["pgrep", "-P", str(proc.pid), "-f", ENGINE_ARGV], capture_output=True,
                          text=True).stdout.split()


@dataclass
class Up:
    proc: subprocess.Popen[str]
    port: int
    state: Path
    engines: list[str] = field(default_factory=list)
    """Every engine pid seen: none may outlive the stop."""
    output: str = ""

    @property
    def client(self) -> OpenAI:
        return OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="local", max_retries=0,
                      timeout=120)

    def kill_engine(self) -> None:
        pids = engines_of(self.proc)
        assert pids, "no vLLM engine process"
        self.engines += pids
        for pid in pids:
            os.kill(int(pid), signal.SIGKILL)


@contextmanager
def aistack_up(engine: EngineLocation, example: Path, tmp_path: Path, *args: str) -> Iterator[Up]:
    """`aistack up --engine vllm [ARGS]` on a copy of `example` without MLflow; stopped with Ctrl-C after."""
    if not is_prepared(weights_folder()):
        pytest.skip(f"the offline weights are not prepared in {weights_folder()}: "
                    "run `aistack engine install`")
    shutil.copytree(example.parent / "docs", tmp_path / "docs")
    doc = yaml.safe_load(example.read_text())
    doc["spec"].pop("observability", None)  # no MLflow: these tests are about the model
    manifest = tmp_path / example.name
    manifest.write_text(yaml.safe_dump(doc))
    port, state = free_port(), tmp_path / "state"
    keys = ("AISTACK_SECRET_OPENAI_API_KEY", "OPENAI_API_KEY")  # unset: the spec's endpoint is not used
    env = {k: v for k, v in os.environ.items() if k not in keys}
    proc = subprocess.Popen([sys.executable, "-m", "aistack.cli", "up", str(manifest), "--port", str(port),
                             "--state", str(state), "--engine", "vllm", *args],
                            env={**env, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    up = Up(proc=proc, port=port, state=state)
    try:
        wait_for((state / "up.json").exists, 600, "aistack up did not start", proc)
        assert json.loads((state / "up.json").read_text())["model"] == OFFLINE_MODEL_NAME
        up.engines += engines_of(proc)
        yield up
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        up.output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, up.output
    assert re.search(r"│ engine +vLLM 0\.32\.0 \((cpu|cuda) build\)", up.output), up.output
    left = subprocess.run(["pgrep", "-f", ENGINE_ARGV], capture_output=True, text=True)
    assert not set(left.stdout.split()) & set(up.engines)


def test_up_serves_the_offline_model_on_vllm_with_an_extractive_answer(
        engine: EngineLocation, examples: Path, tmp_path: Path) -> None:
    with aistack_up(engine, examples / "rag.yaml", tmp_path) as up:
        raw = up.client.chat.completions.with_raw_response.create(
            model=OFFLINE_MODEL_NAME, messages=[{"role": "user", "content": QUESTION}])
        answer = raw.parse()
        text = answer.choices[0].message.content or ""
        quoted, _, label = text.partition(" [")
        number = int(label.split("]", 1)[0])
        cited = (answer.model_extra or {})["citations"][number - 1]["source"]
        assert " ".join(quoted.split()) in " ".join((tmp_path / cited).read_text().split())
        notice = raw.headers["x-aistack-notice"]
        assert "offline model" in notice and "quoted, not written" in notice
        assert "offline" not in text and "quoted" not in text


CAPITAL = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 24}},
           "required": ["capital"], "additionalProperties": False}
WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}},
                          "required": ["city"], "additionalProperties": False}}
FRANCE = "What is the capital of France?"


def test_the_openai_api_through_aistack_up_with_no_key(engine: EngineLocation, examples: Path,
                                                       tmp_path: Path) -> None:
    """Issue 21's client calls against `aistack up` with no model key (the offline model on vLLM),
    through the OpenAI SDK: responses plain and streamed, completions, JSON mode and json_schema, a
    tool call; nothing but the model's own text in the output (the notice is in the header)."""
    with aistack_up(engine, examples / "quickstart.yaml", tmp_path) as up:
        client = up.client
        chat = client.chat.completions.create(model=OFFLINE_MODEL_NAME, temperature=0, max_tokens=24,
                                              messages=[{"role": "user", "content": FRANCE}])
        said = chat.choices[0].message.content or ""
        assert "Paris" in said

        raw = client.responses.with_raw_response.create(model=OFFLINE_MODEL_NAME, input=FRANCE,
                                                         temperature=0, max_output_tokens=24)
        assert "offline model" in raw.headers["x-aistack-notice"]
        answer = raw.parse()
        assert answer.status == "completed" and answer.output_text == said  # the engine's greedy answer
        assert answer.usage is not None and answer.usage.output_tokens == chat.usage.completion_tokens

        events = list(client.responses.create(model=OFFLINE_MODEL_NAME, input=FRANCE, temperature=0,
                                              max_output_tokens=24, stream=True))
        kinds = [e.type for e in events]
        assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
        deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
        assert len(deltas) > 1 and "".join(deltas) == said == events[-1].response.output_text

        text = client.completions.create(model=OFFLINE_MODEL_NAME, prompt="The capital of France is",
                                         max_tokens=4, temperature=0)
        assert text.object == "text_completion" and text.choices[0].text
        assert text.usage is not None and 0 < text.usage.completion_tokens <= 4

        shown = [{"role": "user", "content": "Give the capital of Italy as JSON."},
                 {"role": "assistant", "content": '{"capital": "Rome"}'},
                 {"role": "user", "content": "Give the capital of France as JSON."}]
        mode = client.chat.completions.create(model=OFFLINE_MODEL_NAME, messages=shown, temperature=0,
                                              max_tokens=200, response_format={"type": "json_object"})
        assert isinstance(json.loads(mode.choices[0].message.content or ""), dict)
        schema = client.responses.create(
            model=OFFLINE_MODEL_NAME, input=FRANCE, temperature=0, max_output_tokens=64,
            text={"format": {"type": "json_schema", "name": "capital", "schema": CAPITAL, "strict": True}})
        jsonschema.validate(json.loads(schema.output_text), CAPITAL)

        called = client.responses.create(model=OFFLINE_MODEL_NAME, input="What is the weather in Paris?",
                                         temperature=0, max_output_tokens=64, tool_choice="required",
                                         tools=[{"type": "function", **WEATHER}])
        [call] = [item for item in called.output if item.type == "function_call"]
        assert call.name == "get_weather"
        jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])


def test_an_engine_killed_mid_stream_fails_the_stream_cleanly_and_is_restarted(
        engine: EngineLocation, examples: Path, tmp_path: Path) -> None:
    story = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
    with aistack_up(engine, examples / "quickstart.yaml", tmp_path) as up:
        before = up.client.chat.completions.create(model=OFFLINE_MODEL_NAME, messages=story, temperature=0,
                                                   max_tokens=24)
        received: list[str] = []
        with pytest.raises(openai.APIError) as broken:  # the stream ends with an OpenAI error event
            for chunk in up.client.chat.completions.create(model=OFFLINE_MODEL_NAME, messages=story,
                                                           temperature=0, max_tokens=400, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
                    if len(received) == 3:
                        up.kill_engine()
        assert 3 <= len(received) < 400, received
        assert "model" in broken.value.message or "upstream" in broken.value.message, broken.value.message
        ready = f"http://127.0.0.1:{up.port}/readyz"
        wait_for(lambda: httpx.get(ready, timeout=5).status_code == 200, 300, "the engine was not restarted",
                 up.proc)
        again = up.client.chat.completions.create(model=OFFLINE_MODEL_NAME, messages=story, temperature=0,
                                                  max_tokens=24)
        assert again.choices[0].message.content == before.choices[0].message.content  # greedy: the same

        # killed again, then Ctrl-C while it restarts (~30 s): the stop does not wait for the engine
        up.kill_engine()
        time.sleep(4)  # the refresh loop (every 2 s) has begun the restart
        up.proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        up.proc.wait(timeout=60)
        assert time.monotonic() - started < 20


def engine_ports(up: Up) -> dict[str, int]:
    """Each engine's pid and port, from its command line."""
    ports = {}
    for pid in engines_of(up.proc):
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        ports[pid] = int(args[args.index(b"--port") + 1])
    return ports


def served(ports: list[int]) -> list[float]:
    """Requests each engine finished, from its own /metrics."""
    out = []
    for port in ports:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        out.append(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("vllm:request_success_total")))
    return out


def ask(up: Up, prefix: int, question: int = 0) -> str:
    # over the 4096 characters the gateway keys a prompt by (`prompt_key`), as a RAG context is
    system = f"Document {prefix}: " + "The quick brown fox jumps over the lazy dog. " * 100
    answer = up.client.chat.completions.create(
        model=OFFLINE_MODEL_NAME, max_tokens=2, temperature=0,
        messages=[{"role": "system", "content": system},
                  {"role": "user", "content": f"Question {question}?"}])
    return answer.choices[0].message.content or ""


@pytest.mark.timeout(900)  # two engines start (~1 min on 2 cores), one again after the kill
def test_two_local_engines_routed_by_prefix_and_an_engine_killed_is_routed_around(
        engine: EngineLocation, examples: Path, tmp_path: Path) -> None:
    with aistack_up(engine, examples / "quickstart.yaml", tmp_path, "--replicas", "2") as up:
        ports = engine_ports(up)
        assert len(ports) == 2, ports
        order = sorted(ports.values())

        before = served(order)
        for question in range(3):  # one prefix, asked three times: one engine takes all three
            ask(up, 0, question)
        after = served(order)
        assert sorted(a - b for a, b in zip(after, before, strict=True)) == [0, 3]

        before = served(order)
        for prefix in range(1, 13):  # twelve prefixes: both engines take some (all on one: p = 2^-11)
            ask(up, prefix)
        after = served(order)
        spread = [a - b for a, b in zip(after, before, strict=True)]
        assert sum(spread) == 12 and min(spread) > 0, spread

        victim = next(iter(ports))
        up.engines += list(ports)
        subprocess.run(["kill", "-9", victim], check=True)
        time.sleep(0.5)
        for prefix in range(1, 13):  # every prefix answered: the gateway goes on to the other engine
            ask(up, prefix, question=1)

        def healthy(port: int) -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
            except httpx.HTTPError:  # the restarted engine binds its port once it is ready
                return False

        def two_engines_again() -> bool:
            now = engine_ports(up)
            return len(now) == 2 and victim not in now and all(healthy(p) for p in now.values())

        wait_for(two_engines_again, 300, "the killed engine was not restarted", up.proc)
        up.engines += list(engine_ports(up))
    assert re.search(r"vLLM 0\.32\.0 \((cpu|cuda) build\) x2", up.output), up.output
    assert "2 vLLM engines (--replicas)" in up.output, up.output
