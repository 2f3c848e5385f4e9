"""`python -m aistack.runtime` serves the config named by AISTACK_GATEWAY_CONFIG, in one worker
process or several."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from aistack.runtime.local.ports import free_port
from aistack.testing.gateway import base_config


def _wait_ready(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
    raise AssertionError("the gateway did not become ready")


def _worker_processes(pid: int) -> list[int]:
    """Children of `pid` that multiprocessing spawned (not its resource tracker)."""
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_several_workers_serve_the_same_config(upstream, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base_config(upstream.base_url)))
    port = free_port()
    env = {**os.environ, "AISTACK_GATEWAY_WORKERS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "aistack.runtime", "--host", "127.0.0.1", "--port",
                             str(port),
                             "--config", str(path)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _wait_ready(proc, port)
        assert len(_worker_processes(proc.pid)) == 2
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        for i in range(8):
            out = client.chat.completions.create(model="demo-model",
                                                 messages=[{"role": "user", "content": f"w{i}"}])
            assert out.choices[0].message.content == f"Echo: w{i}"
    finally:
        proc.terminate()
        proc.wait(timeout=40)


@pytest.mark.parametrize(("flag", "env"), [(["--workers", "0"], {}), (["--workers", "two"], {}),
                                          ([], {"AISTACK_GATEWAY_WORKERS": "-1"})])
def test_bad_worker_count_is_refused(flag, env):
    bad = subprocess.run([sys.executable, "-m", "aistack.runtime", *flag], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "must be a whole number >= 1" in bad.stderr


def test_pod_entrypoint_serves_and_refuses_bad_config(upstream, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base_config(upstream.base_url)))
    port = free_port()
    env = {**os.environ, "AISTACK_GATEWAY_CONFIG": str(path)}
    proc = subprocess.Popen([sys.executable, "-m", "aistack.runtime", "--host", "127.0.0.1", "--port",
                             str(port)],
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
        out = client.chat.completions.create(model="demo-model",
                                             messages=[{"role": "user", "content": "pod"}])
        assert out.choices[0].message.content == "Echo: pod"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    path.write_text("model: 3")
    bad = subprocess.run([sys.executable, "-m", "aistack.runtime", "--port", str(port)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "is not a valid gateway config" in bad.stderr
