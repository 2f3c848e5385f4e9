"""`python -m aistack.runtime` serves the config named by AISTACK_GATEWAY_CONFIG."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import openai
import yaml

from aistack.runtime.testing.gateway import base_config
from aistack.runtime.testing.openai_server import free_port


def test_pod_entrypoint_serves_and_refuses_bad_config(upstream, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base_config(upstream.base_url)))
    port = free_port()
    env = {**os.environ, "AISTACK_GATEWAY_CONFIG": str(path)}
    proc = subprocess.Popen([sys.executable, "-m", "aistack.runtime", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.2)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        out = client.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "pod"}])
        assert out.choices[0].message.content == "Echo: pod"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    path.write_text("model: 3")
    bad = subprocess.run([sys.executable, "-m", "aistack.runtime", "--port", str(port)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "is not a valid gateway config" in bad.stderr
