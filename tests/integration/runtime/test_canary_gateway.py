"""A real gateway splitting requests between two versions of the model (`model.canary` in its
config), both served by the deterministic upstream under two model names, so the upstream's log
says which version each request reached."""

from __future__ import annotations

import httpx
import pytest

from aistack.runtime.gateway.turn import MODEL_VERSION_TAG
from aistack.testing.gateway import RecordingTracer, base_config, run_gateway
from aistack.testing.openai_server import run_openai_server

STABLE, CANARY = "test-model", "canary-model"


@pytest.fixture(scope="module")
def two_versions():
    with run_openai_server(models=[STABLE, CANARY], hang_seconds=5.0) as server:
        yield server


def canary_config(url: str, **canary: object) -> dict[str, object]:
    upstream = {"baseUrl": url, "model": CANARY, "timeoutSeconds": 5}
    return base_config(url, model={"canary": {"upstream": upstream, **canary}})


def chat(client: httpx.Client, text: str, headers: dict[str, str] | None = None) -> httpx.Response:
    resp = client.post("/v1/chat/completions", headers=headers,
                       json={"model": "demo-model", "messages": [{"role": "user", "content": text}]})
    return resp


def versions_of(server, start: int) -> list[str]:
    return [r["model"] for r in server.requests[start:]]


def test_a_90_10_split_over_2000_requests_lands_within_2_points_of_10_percent(two_versions) -> None:
    with run_gateway(canary_config(two_versions.base_url, weight=10, seed=11)) as gw, \
            httpx.Client(base_url=gw.url, timeout=20) as client:
        start = len(two_versions.requests)
        for i in range(2000):
            assert chat(client, f"q{i}").status_code == 200
        seen = versions_of(two_versions, start)
        share = seen.count(CANARY) / len(seen)
        assert len(seen) == 2000 and abs(share - 0.10) <= 0.02, share
        metrics = gw.metrics()
    canary_calls = seen.count(CANARY)
    assert f'aistack_gateway_model_version_requests_total{{version="canary"}} {canary_calls}.0' in metrics
    stable_calls = 2000 - canary_calls
    assert f'aistack_gateway_model_version_requests_total{{version="stable"}} {stable_calls}.0' in metrics
    assert 'aistack_gateway_model_version_seconds_count{version="canary"}' in metrics


def test_each_sticky_header_keeps_to_one_version_plain_and_streamed(two_versions) -> None:
    config = canary_config(two_versions.base_url, weight=40, stickyBy="header", stickyHeader="X-Session-Id")
    with run_gateway(config) as gw, httpx.Client(base_url=gw.url, timeout=20) as client:
        for session in range(60):
            start = len(two_versions.requests)
            headers = {"X-Session-Id": f"conversation-{session}"}
            for turn in range(3):
                assert chat(client, f"turn {turn}", headers).status_code == 200
            body = {"model": "demo-model", "stream": True, "messages": [{"role": "user", "content": "more"}]}
            with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as resp:
                assert resp.status_code == 200 and any("[DONE]" in line for line in resp.iter_lines())
            seen = versions_of(two_versions, start)
            assert len(seen) == 4 and len(set(seen)) == 1, (session, seen)


def test_each_api_key_keeps_to_one_version(two_versions, monkeypatch) -> None:
    keys = [f"key-{i}" for i in range(40)]
    monkeypatch.setenv("CANARY_TEST_KEYS", "\n".join(keys))
    config = canary_config(two_versions.base_url, weight=50, stickyBy="apiKey")
    config["server"] = {"apiKeysEnv": "CANARY_TEST_KEYS"}
    with run_gateway(config) as gw, httpx.Client(base_url=gw.url, timeout=20) as client:
        landed = set()
        for key in keys:
            start = len(two_versions.requests)
            for _ in range(3):
                assert chat(client, "hello", {"Authorization": f"Bearer {key}"}).status_code == 200
            seen = versions_of(two_versions, start)
            assert len(set(seen)) == 1
            landed |= set(seen)
    assert landed == {STABLE, CANARY}


def test_the_trace_names_the_version_that_answered(two_versions) -> None:
    config = canary_config(two_versions.base_url, weight=50, stickyBy="header", stickyHeader="X-Session-Id")
    with run_gateway(config) as gw, httpx.Client(base_url=gw.url, timeout=20) as client:
        tracer = RecordingTracer()
        gw.app.state["holder"].current.tracer = tracer
        for session in range(20):
            start = len(two_versions.requests)
            assert chat(client, "hi", {"X-Session-Id": f"s{session}"}).status_code == 200
            (model,) = versions_of(two_versions, start)
            assert tracer.traces[-1].tags[MODEL_VERSION_TAG] == ("canary" if model == CANARY else "stable")


def test_canary_failures_count_as_its_errors_and_the_fallback_answers(two_versions) -> None:
    config = canary_config(two_versions.base_url, weight=100)
    config["model"]["fallback"] = {"baseUrl": two_versions.base_url, "model": STABLE, "timeoutSeconds": 5}
    with run_gateway(config) as gw, httpx.Client(base_url=gw.url, timeout=20) as client:
        start = len(two_versions.requests)
        two_versions.configure(fail_next=["500"])  # the canary's call fails, the fallback's does not
        resp = chat(client, "please")
        assert resp.status_code == 200 and "answered by the fallback" in resp.headers["x-aistack-notice"]
        assert versions_of(two_versions, start) == [CANARY, STABLE]
        resp = chat(client, "[[fail:400]] a bad request is the client's, not the canary's")
        assert resp.status_code == 400
        assert chat(client, "fine").status_code == 200
        metrics = gw.metrics()
    assert 'aistack_gateway_model_version_errors_total{version="canary"} 1.0' in metrics
    assert 'aistack_gateway_model_version_requests_total{version="canary"} 3.0' in metrics


def test_a_gateway_without_canary_has_no_version_series(two_versions) -> None:
    with run_gateway(base_config(two_versions.base_url)) as gw, \
            httpx.Client(base_url=gw.url, timeout=20) as client:
        assert chat(client, "x").status_code == 200
        assert 'version="stable"' not in gw.metrics()


def test_a_gateway_without_canary_refuses_a_canary_pin_rather_than_answer_with_stable(two_versions) -> None:
    """An evaluation of "the canary" answered by the stable model would compare stable with itself."""
    with run_gateway(base_config(two_versions.base_url)) as gw, \
            httpx.Client(base_url=gw.url, timeout=20) as client:
        start = len(two_versions.requests)
        resp = chat(client, "hi", {"x-aistack-model-version": "canary"})
        assert resp.status_code == 409 and resp.json()["error"]["code"] == "canary_not_served"
        assert len(two_versions.requests) == start
        assert chat(client, "hi", {"x-aistack-model-version": "stable"}).status_code == 200


def test_a_pinned_request_reaches_the_version_it_names_and_a_bad_pin_is_a_400(two_versions) -> None:
    config = canary_config(two_versions.base_url, weight=50, stickyBy="header", stickyHeader="X-Session-Id")
    with run_gateway(config) as gw, httpx.Client(base_url=gw.url, timeout=20) as client:
        for version, model in (("stable", STABLE), ("canary", CANARY)):
            start = len(two_versions.requests)
            for session in range(10):  # whatever the split would choose for each session
                headers = {"X-Session-Id": f"s{session}", "x-aistack-model-version": version}
                assert chat(client, "hi", headers).status_code == 200
            assert set(versions_of(two_versions, start)) == {model}
        resp = chat(client, "hi", {"x-aistack-model-version": "beta"})
        assert resp.status_code == 400 and "'stable' or 'canary'" in resp.json()["error"]["message"]


def test_the_evaluations_asker_pins_the_version_it_evaluates(two_versions) -> None:
    """`aistack eval --model-version`: every question reaches the version asked for."""
    import asyncio

    from aistack.runtime.evaluation.dataset import Question
    from aistack.runtime.evaluation.evaluate import MODEL_VERSION_HEADER
    from aistack.runtime.evaluation.runner import openai_asker

    config = canary_config(two_versions.base_url, weight=50)
    with run_gateway(config) as gw:
        for version, model in (("stable", STABLE), ("canary", CANARY)):
            ask = openai_asker(base_url=f"{gw.url}/v1", model="demo-model", api_key=None,
                               headers={MODEL_VERSION_HEADER: version})
            start = len(two_versions.requests)

            async def all_questions(ask=ask) -> list[str]:
                return [(await ask(Question(question=f"q{i}"))).text for i in range(12)]

            answers = asyncio.run(all_questions())
            assert all(a.startswith("Echo: q") for a in answers)
            assert set(versions_of(two_versions, start)) == {model}
