"""The images serve: the gateway answers a chat completion through the `openai` SDK, the
guardrails sidecar command serves its config, the operator reconciles a quickstart AIStack
against the emulated API server; each stops on SIGTERM without being killed.

The gateway runs with its default command in its own network namespace (slirp4netns), its port
published on 127.0.0.1; it reaches the test upstream on the host's loopback at 10.0.2.2. The
sidecar (which binds the pod's loopback) and the operator (which only dials out; its liveness
port is chosen free) run with host networking.
"""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
import yaml

from aistack.api.conventions import GATEWAY_CONFIG_PATH, GATEWAY_PORT, LABEL_INSTANCE
from aistack.api.gateway_config import Endpoints, build_gateway_config
from aistack.api.images import package_version, runtime_image as runtime_image_reference
from aistack.api.manifests import parse_stack

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
HOST_FROM_CONTAINER = "10.0.2.2"  # slirp4netns' address of the host loopback
OWN_NETNS = ("--network", "slirp4netns:allow_host_loopback=true")


def needs_module(module: str, branch: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not in this checkout yet (it comes with branch `{branch}`)")


def wait_http(url: str, container, *, timeout: float = 90.0) -> bytes:
    """GET `url` until it answers 200; fail with the container's logs if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return response.read()
        except (OSError, urllib.error.URLError):
            pass
        if not container.state()["Running"]:
            pytest.fail(f"container exited ({container.state()['ExitCode']}):\n{container.logs()[-4000:]}")
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout}s:\n{container.logs()[-4000:]}")


def assert_graceful_stop(container) -> None:
    code, seconds = container.stop(grace=20)
    assert code == 0 and seconds < 15, (f"SIGTERM: exit code {code} after {seconds:.1f}s "
                                        f"(137 = killed after the grace period)\n{container.logs()[-3000:]}")


def quickstart(base_url: str) -> dict:
    doc = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    doc["metadata"]["namespace"] = "default"
    doc["spec"]["model"]["openai"]["baseUrl"] = base_url
    return doc


def start_gateway(image: str, config, *, start_container, free_port, folder: Path):
    """The gateway container serving `config` (mounted read-only) on a host port, once it answers."""
    config_file = folder / "gateway.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True)))
    config_file.chmod(0o644)
    port = free_port()
    container = start_container(image, options=(
        *OWN_NETNS, "-p", f"127.0.0.1:{port}:{GATEWAY_PORT}",
        "-v", f"{config_file}:{GATEWAY_CONFIG_PATH}:ro",
        "-e", f"{config.model.primary.api_key_env}=sk-test-upstream"))
    wait_http(f"http://127.0.0.1:{port}/v1/models", container)
    return container, port


def test_gateway_container_serves_a_chat_completion(runtime_image, start_container, free_port,
                                                    tmp_path) -> None:
    needs_module("aistack.runtime.__main__", "runtime")
    needs_module("aistack.testing.openai_server", "runtime")
    from aistack.testing.openai_server import run_openai_server

    with run_openai_server() as upstream:
        stack = parse_stack(quickstart(f"http://{HOST_FROM_CONTAINER}:{upstream.port}/v1"))
        config = build_gateway_config(stack, Endpoints())
        upstream.configure(models=[config.model.primary.model])
        container, port = start_gateway(runtime_image, config, start_container=start_container,
                                        free_port=free_port, folder=tmp_path)

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(
            model=config.model.public_name,
            messages=[{"role": "user", "content": "[[say:served from a container]]"}])
        assert answer.choices[0].message.content == "served from a container"
        assert any(
            "served from a container" in str(r) for r in upstream.requests), "the upstream saw no request"
        assert container.exec("id", "-u").strip() == "10001"
        assert_graceful_stop(container)


def test_gateway_container_exports_traces_to_mlflow(runtime_image, start_container, free_port, tmp_path,
                                                    monkeypatch) -> None:
    """The image's MLflow client (mlflow-skinny, no server stack) exports a request's trace to
    a real tracking server: here the full MLflow of the test environment on the host."""
    needs_module("aistack.testing.openai_server", "runtime")
    import mlflow

    from aistack.runtime.local.mlflow_server import MlflowServer
    from aistack.testing.openai_server import run_openai_server

    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")  # starts in ~20 s instead of 40-110 s
    server = MlflowServer(folder=tmp_path / "mlflow", port=free_port())
    server.start()
    try:
        with run_openai_server() as upstream:
            doc = quickstart(f"http://{HOST_FROM_CONTAINER}:{upstream.port}/v1")
            doc["spec"]["observability"] = {"mlflow": {"managed": {}}, "traceSampling": 1.0}
            stack = parse_stack(doc)
            config = build_gateway_config(stack, Endpoints(
                tracking_uri=f"http://{HOST_FROM_CONTAINER}:{server.port}"))
            upstream.configure(models=[config.model.primary.model])
            container, port = start_gateway(runtime_image, config, start_container=start_container,
                                            free_port=free_port, folder=tmp_path)
            # Traces sent before the tracking server is healthy are dropped by design.
            assert server.wait(timeout_seconds=180), (tmp_path / "mlflow" / "server.log").read_text()[-3000:]

            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
            client.chat.completions.create(model=config.model.public_name,
                                           messages=[{"role": "user",
                                                      "content": "[[say:traced in a container]]"}])
            tracking = mlflow.MlflowClient(tracking_uri=server.url)
            deadline, traces = time.monotonic() + 90, []
            while time.monotonic() < deadline and not traces:
                experiment = tracking.get_experiment_by_name(config.tracing.experiment)
                # The server may list a trace before its spans and tags have landed: wait for both.
                traces = [t for t in (tracking.search_traces(locations=[experiment.experiment_id])
                                      if experiment else [])
                          if any(s.name == "generation" for s in t.data.spans)
                          and "aistack.stack" in t.info.tags]
                time.sleep(0.5)
            assert traces, f"no complete trace arrived:\n{container.logs()[-3000:]}"
            root = next(s for s in traces[0].data.spans if s.parent_id is None)
            assert root.outputs == {"answer": "traced in a container"}
            tags = traces[0].info.tags
            assert (tags["aistack.stack"], tags["aistack.config_hash"]) == (stack.name, config.config_hash)
            assert_graceful_stop(container)
    finally:
        server.stop()


SIDECAR_COMMANDS = {
    # What the operator's render has used so far: NeMo's own server on a config folder.
    "nemoguardrails-server": ("aistack.runtime", ["nemoguardrails", "server", "--config", "/rails",
                                                  "--disable-chat-ui", "--port"]),
    # The runtime's sidecar entry point, serving a complete NeMo config folder.
    "guardrails-sidecar": ("aistack.runtime.guardrails.sidecar",
                           ["python", "-m", "aistack.runtime.guardrails.sidecar", "--nemo-config",
                            "/rails/aistack",
                            "--config-id", "aistack", "--port"]),
}


@pytest.mark.parametrize("command", sorted(SIDECAR_COMMANDS))
def test_guardrails_sidecar_command_serves_its_config(command, runtime_image, start_container, free_port,
                                                      tmp_path) -> None:
    """The operator runs this image with a guardrails command as the gateway's sidecar; it
    listens on the pod's loopback, so here it shares the host's network."""
    module, argv = SIDECAR_COMMANDS[command]
    needs_module(module, "runtime")
    rails = tmp_path / "rails"
    (rails / "aistack").mkdir(parents=True)
    (rails / "aistack" / "config.yml").write_text(yaml.safe_dump({
        "models": [{"type": "main", "engine": "openai", "model": "test-model",
                    "parameters": {"base_url": "http://127.0.0.1:9/v1"}}]}))
    for path in (rails, rails / "aistack"):
        path.chmod(0o755)
    (rails / "aistack" / "config.yml").chmod(0o644)
    port = free_port()
    container = start_container(runtime_image, *argv, str(port), options=(
        "--network", "host", "-v", f"{rails}:/rails:ro", "-e", "OPENAI_API_KEY=sk-unused"))
    body = wait_http(f"http://127.0.0.1:{port}/v1/rails/configs", container, timeout=120)
    assert {"id": "aistack"} in json.loads(body)
    assert_graceful_stop(container)


def test_operator_container_reconciles_the_quickstart(operator_image, start_container, free_port,
                                                      tmp_path) -> None:
    needs_module("aistack.operator.__main__", "operator")
    needs_module("aistack.testing.cluster", "operator")
    from aistack.testing.emulator import EmulatorThread
    from aistack.testing.cluster import Cluster, wait_for

    with EmulatorThread() as thread:
        cluster = Cluster(thread)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": thread.url}}],
            "users": [{"name": "emulator", "user": {}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}]}))
        kubeconfig.chmod(0o644)
        liveness_port = free_port()
        container = start_container(
            operator_image, "--standalone", "--kubeconfig", "/kube/config",
            "--liveness", f"http://127.0.0.1:{liveness_port}/healthz",
            options=("--network", "host", "-v", f"{kubeconfig}:/kube/config:ro"))
        wait_http(f"http://127.0.0.1:{liveness_port}/healthz", container)

        cluster.apply_stack(quickstart("https://api.openai.com/v1"))
        try:
            children = wait_for(lambda: {k: v for k, v in cluster.children("default", "quickstart").items()
                                         if k[0] == "Deployment"}, timeout=60, what="the gateway Deployment")
        except TimeoutError as err:
            pytest.fail(f"{err}\n{container.logs()[-4000:]}")
        (deployment,) = children.values()
        assert deployment["metadata"]["labels"][LABEL_INSTANCE] == "quickstart"
        images = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
        assert runtime_image_reference(version=package_version()) in images
        wait_for(lambda: (
            cluster.stack("default", "quickstart") or {}).get("status", {}).get("observedGeneration"),
                 timeout=30, what="status.observedGeneration")
        assert_graceful_stop(container)
