"""`aistack up` as a subprocess, and the keys on a laptop: a hosted model's key comes from the
provider's own variable (`OPENAI_API_KEY`, ...) when the manifest's secret variable is unset, the
panel says which variable (never the value), and the gateway really sends that key upstream;
gateway keys that are configured but not set are named in the manifest's terms.

The provider hosts are public; the test server is on loopback. So the launcher adds 127.0.0.1 to
the host table (data, not behaviour) and then runs the real CLI entry point unchanged.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from openai import OpenAI

from aistack.runtime.local.ports import free_port
from aistack.testing.openai_server import run_openai_server
from aistack.testing.processes import wait_alive_until

SECRET_ENV = "AISTACK_SECRET_OPENAI_API_KEY"
PROVIDER_ENV = "LOOPBACK_PROVIDER_API_KEY"
PROVIDER_KEY = "sk-loopback-provider-key"
GATEWAY_KEYS_ENV = "AISTACK_SECRET_GW_KEYS_KEYS"
LAUNCHER = (
    "import runpy, sys\n"
    "from aistack.runtime.local import provider_keys\n"
    f"provider_keys.PROVIDER_KEY_ENVS['127.0.0.1'] = {PROVIDER_ENV!r}\n"
    "sys.argv = ['aistack', *sys.argv[1:]]\n"
    "runpy.run_module('aistack.cli', run_name='__main__', alter_sys=True)\n"
)


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """A hosted provider that refuses every request without its key."""
    with run_openai_server(models=["gpt-4o-mini"], api_key=PROVIDER_KEY) as server:
        yield f"http://{server.host}:{server.port}/v1"


def manifest(folder: Path, base_url: str, *, max_tokens: int = 256, **spec: object) -> Path:
    path = folder / "stack.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "keyed"},
        "spec": {"model": {"provider": "openai", "name": "gpt-4o-mini", "defaults": {"maxTokens": max_tokens},
                           "openai": {"baseUrl": base_url,
                                      "apiKeySecretRef": {"name": "openai", "key": "api-key"}}},
                 "orchestration": {"mode": "pipeline"}, **spec}}))
    return path


def clean_env(**env: str) -> dict[str, str]:
    unset = (SECRET_ENV, PROVIDER_ENV, GATEWAY_KEYS_ENV)
    return {**{k: v for k, v in os.environ.items() if k not in unset}, "HF_HUB_OFFLINE": "1", **env}


def start_up(path: Path, port: int, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, "up", str(path), "--port", str(port), *extra],
                            env=clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    running = path.parent / ".aistack" / "keyed" / "up.json"
    wait_alive_until(running.exists, proc, timeout_s=180, what="aistack up did not start")
    return proc


def stop_up(proc: subprocess.Popen[str]) -> str:
    """What the user saw, with the panel's borders and line wrapping taken out."""
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def test_the_providers_variable_supplies_the_key_and_the_gateway_sends_it(tmp_path: Path,
                                                                          provider: str) -> None:
    port = free_port()
    proc = start_up(manifest(tmp_path, provider), port, {PROVIDER_ENV: PROVIDER_KEY})
    try:
        info = json.loads((tmp_path / ".aistack" / "keyed" / "up.json").read_text())
        assert info["model"] == "gpt-4o-mini" and info["offline_model"] is False
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o-mini",
                                                messages=[{"role": "user", "content": "hi"}])
        # the provider refuses a request without the key
        assert answer.choices[0].message.content == "Echo: hi"
    finally:
        output = stop_up(proc)
    assert f"{provider} is reachable (key from ${PROVIDER_ENV})" in output
    assert PROVIDER_KEY not in output


@pytest.mark.slow
def test_with_neither_variable_set_the_panel_names_both_and_the_offline_model_serves(tmp_path: Path,
                                                                                    provider: str) -> None:
    port = free_port()
    # the in-process offline model: its answers say so in a header (vLLM: tests/integration/engine)
    proc = start_up(manifest(tmp_path, provider, max_tokens=4096), port, {}, "--engine", "transformers")
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=300)
        # no max_tokens: the gateway sends the manifest's 4096, capped for the offline model's 2048 context
        raw = client.chat.completions.with_raw_response.create(
            model="aistack-offline-smollm2-135m", messages=[{"role": "user", "content": "Say hello."}])
        answer = raw.parse()
        text = answer.choices[0].message.content or ""
        assert answer.choices[0].finish_reason == "stop" and text.strip()
        assert "offline model" in raw.headers["x-aistack-notice"] and "offline" not in text.lower()
    finally:
        output = stop_up(proc)
    assert f"neither ${SECRET_ENV} nor ${PROVIDER_ENV} is set (the key for {provider})" in output
    assert "spec.model.defaults.maxTokens 4096 is over the offline model's 2048-token context" in output


def test_gateway_keys_configured_but_unset_are_named_in_the_manifests_terms(tmp_path: Path,
                                                                            provider: str) -> None:
    path = manifest(tmp_path, provider, gateway={"apiKeysSecretRef": {"name": "gw-keys", "key": "keys"}})
    result = subprocess.run([sys.executable, "-m", "aistack.cli", "up", str(path), "--port",
                             str(free_port())],
                            env=clean_env(**{SECRET_ENV: PROVIDER_KEY}), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "spec.gateway.apiKeysSecretRef" in message and f"export {GATEWAY_KEYS_ENV}" in message
    assert "one 'key' or 'key tenant' per line" in message and "the Secret gw-keys key keys" in message
    assert "server.apiKeysEnv" not in message
    # refused before any slow stage
    assert "checking the model endpoint" not in message and "MLflow" not in message
