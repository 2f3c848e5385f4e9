"""Bearer API keys with tenants, and atomic config reloads from the watched file."""

from __future__ import annotations

import concurrent.futures
import os
import time

import httpx
import openai
import pytest
import yaml

from aistack.api.gateway_config import GatewayConfig
from aistack.runtime.core.config import ConfigError, load_config
from aistack.runtime.gateway import create_app
from aistack.testing.gateway import ListRetriever, base_config, run_gateway
from aistack.testing.openai_server import serve_in_thread

KEYS = "# gateway keys\nkey-acme acme\n\nkey-open\n"


@pytest.fixture
def keyed(upstream, monkeypatch):
    monkeypatch.setenv("GW_KEYS", KEYS)
    retriever = ListRetriever([])
    cfg = base_config(upstream.base_url, server={"apiKeysEnv": "GW_KEYS"}, retrieval={
        "collection": "c", "distance": "Cosine", "topK": 1, "maxContextTokens": 100,
        "embedder": {"provider": "local", "model": "e", "dimension": 8}})
    with run_gateway(cfg, retriever=retriever) as gw:
        gw.retriever = retriever
        yield gw


def ask(gw, key, headers=None):
    return gw.client(api_key=key, default_headers=headers or {}).chat.completions.create(
        model="demo-model", messages=[{"role": "user", "content": "who"}])


def test_missing_or_wrong_key_is_401(keyed):
    resp = httpx.post(f"{keyed.url}/v1/chat/completions", json={})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "missing_api_key"
    assert resp.headers["www-authenticate"] == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        ask(keyed, "key-wrong")
    with pytest.raises(openai.AuthenticationError):
        keyed.client(api_key="nope").models.list()


def test_tenant_comes_from_the_key_then_the_header(keyed):
    ask(keyed, "key-acme", {"X-Tenant": "evil"})
    assert keyed.retriever.calls[-1][1] == "acme"
    ask(keyed, "key-open", {"X-Tenant": "team-b"})
    assert keyed.retriever.calls[-1][1] == "team-b"
    ask(keyed, "key-open")
    assert keyed.retriever.calls[-1][1] is None


@pytest.mark.parametrize(("keys", "warned"), [(KEYS, True), ("key-acme acme\nkey-b team-b\n", False)])
def test_keys_without_a_tenant_are_warned_about_at_start(upstream, monkeypatch, caplog, keys, warned):
    monkeypatch.setenv("GW_KEYS", keys)
    cfg = base_config(upstream.base_url, server={"apiKeysEnv": "GW_KEYS"}, retrieval={
        "collection": "c", "distance": "Cosine", "topK": 1, "maxContextTokens": 100,
        "embedder": {"provider": "local", "model": "e", "dimension": 8}})
    with caplog.at_level("WARNING", logger="aistack.gateway"):
        create_app(GatewayConfig.model_validate(cfg), retriever=ListRetriever([]))
    warnings = [r.getMessage() for r in caplog.records if "no tenant" in r.getMessage()]
    assert bool(warnings) == warned
    if warned:
        assert warnings[0].startswith("1 of the gateway's API keys") and "X-Tenant header" in warnings[0]


def test_health_and_metrics_need_no_key(keyed):
    assert httpx.get(f"{keyed.url}/healthz").status_code == 200
    assert httpx.get(f"{keyed.url}/metrics").status_code == 200


@pytest.mark.parametrize(("value", "fragment"),
                         [(None, "unset or empty"), ("\n# only comments\n", "holds no API key"),
                                                 ("a b c", "expected 'key' or 'key tenant'")])
def test_bad_key_lists_refuse_to_start(upstream, monkeypatch, value, fragment):
    if value is None:
        monkeypatch.delenv("GW_KEYS", raising=False)
    else:
        monkeypatch.setenv("GW_KEYS", value)
    with pytest.raises(ValueError, match=fragment):
        create_app(load_config_from(base_config(upstream.base_url, server={"apiKeysEnv": "GW_KEYS"})))


def test_unset_keys_are_named_in_the_manifests_terms(upstream, monkeypatch):
    """The rendered config carries the manifest's ref, so the message names the field, the variable to
    export and, for a pod, the Secret and key; never the config's internal server.apiKeysEnv."""
    monkeypatch.delenv("AISTACK_SECRET_GW_KEYS_KEYS", raising=False)
    cfg = base_config(upstream.base_url, server={"apiKeysEnv": "AISTACK_SECRET_GW_KEYS_KEYS",
                                                 "apiKeysSecretRef": {"name": "gw-keys", "key": "keys"}})
    with pytest.raises(ValueError) as err:
        create_app(load_config_from(cfg))
    message = str(err.value)
    assert "spec.gateway.apiKeysSecretRef" in message and "export AISTACK_SECRET_GW_KEYS_KEYS" in message
    assert "the Secret gw-keys key keys" in message and "one 'key' or 'key tenant' per line" in message
    assert "server.apiKeysEnv" not in message
    monkeypatch.setenv("AISTACK_SECRET_GW_KEYS_KEYS", "a b c")
    with pytest.raises(ValueError,
                       match=r"\$AISTACK_SECRET_GW_KEYS_KEYS \(the Secret gw-keys key keys\) line 1"):
        create_app(load_config_from(cfg))


def test_the_rendered_config_names_the_keys_secret_but_holds_no_key(monkeypatch):
    from aistack.api.gateway_config import Endpoints, build_gateway_config
    from aistack.api.manifests import parse_stack

    monkeypatch.setenv("AISTACK_SECRET_GW_KEYS_KEYS", "key-secret-value")
    stack = parse_stack({"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack", "metadata": {"name": "s"},
                         "spec": {"model": {"provider": "openai", "name": "m",
                                            "openai": {"baseUrl": "http://127.0.0.1:9/v1",
                                                       "apiKeySecretRef": {"name": "o", "key": "k"}}},
                                  "gateway": {"apiKeysSecretRef": {"name": "gw-keys", "key": "keys"}}}})
    wire = build_gateway_config(stack, Endpoints()).to_wire()
    assert wire["server"]["apiKeysEnv"] == "AISTACK_SECRET_GW_KEYS_KEYS"
    assert wire["server"]["apiKeysSecretRef"] == {"name": "gw-keys", "key": "keys"}
    assert "key-secret-value" not in str(wire)


def load_config_from(data):
    from aistack.api.gateway_config import GatewayConfig
    return GatewayConfig.model_validate(data)


@pytest.mark.parametrize(("text", "fragment"), [("a: [", "not valid YAML"), ("- 1", "must hold a mapping"),
                                                ("name: x", "model: Field required")])
def test_bad_config_files_are_refused_with_the_field(tmp_path, text, fragment):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def write_atomic(path, text):
    """Replace the file in one step, as a ConfigMap update does (a symlink swap)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_reload_applies_good_configs_and_keeps_the_old_one_on_bad(upstream, tmp_path):
    path = tmp_path / "config.yaml"
    cfg = base_config(upstream.base_url)
    write_atomic(path, yaml.safe_dump(cfg))
    app = create_app(config_path=path, reload_interval_s=0.05)
    with serve_in_thread(app) as port:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)

        def wait_for(predicate):
            deadline = time.monotonic() + 20  # generous: the reload builds state on a worker thread
            while time.monotonic() < deadline:
                if predicate():
                    return True
                time.sleep(0.05)
            return False

        renamed = {**cfg, "configHash": "ffffffffffffffff",
                   "model": {**cfg["model"], "publicName": "renamed"}}
        write_atomic(path, yaml.safe_dump(renamed))
        assert wait_for(lambda: [m.id for m in client.models.list()] == ["renamed"])
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'aistack_gateway_config_reloads_total{result="applied"} 1.0' in metrics
        assert 'config_hash="ffffffffffffffff"' in metrics and 'config_hash="0123456789abcdef"' not in metrics

        write_atomic(path, "model: {publicName: [broken")
        assert wait_for(lambda: 'result="refused"} 1.0' in httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        write_atomic(path, yaml.safe_dump({**renamed, "server": {"apiKeysEnv": "NOT_SET_ANYWHERE"}}))
        assert wait_for(lambda: 'result="refused"} 2.0' in httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        out = client.chat.completions.create(model="renamed", messages=[{"role": "user", "content": "still"}])
        assert out.choices[0].message.content == "Echo: still"


def test_in_flight_requests_finish_on_the_old_config(upstream, tmp_path):
    path = tmp_path / "config.yaml"
    cfg = base_config(upstream.base_url)
    write_atomic(path, yaml.safe_dump(cfg))
    app = create_app(config_path=path, reload_interval_s=0.05)
    with serve_in_thread(app) as port:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(client.chat.completions.create, model="demo-model",
                               messages=[{"role": "user", "content": "[[sleep:4]]slow"}])
            time.sleep(0.15)
            write_atomic(path, yaml.safe_dump({**cfg, "model": {**cfg["model"], "publicName": "next"}}))
            deadline = time.monotonic() + 20
            while [m.id for m in client.models.list()] != ["next"] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not slow.done()
            result = slow.result()
        assert result.model == "demo-model" and result.choices[0].message.content == "Echo: [[sleep:4]]slow"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="demo-model", messages=[{"role": "user", "content": "x"}])
