"""The canary's weight in force (`decide()`, pure) and its render: its own Deployment and Services,
the gateway config's split, the Lease the gateways report on."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from aistack.api.canary_report import CanaryReport, VersionStats
from aistack.api.manifests import parse_stack
from aistack.api.v1alpha1.canary import CanarySpec
from aistack.operator.canary import decide, judge
from aistack.operator.render import render

T0 = 1_700_000_000.0


def spec(**kw: Any) -> CanarySpec:
    return CanarySpec.model_validate({"name": "org/model-v2", "weight": 10, **kw})


def lease(*, stable: tuple[int, int, float], canary: tuple[int, int, float], at: float) -> dict[str, Any]:
    """A Lease holding one gateway's window: (requests, errors, latency of each) per version."""
    versions = {}
    for name, (requests, errors, seconds) in (("stable", stable), ("canary", canary)):
        stats = VersionStats()
        for i in range(requests):
            stats.observe(seconds, ok=i >= errors)
        versions[name] = stats
    report = CanaryReport(at=at, window=60, versions=versions).encode()
    return {"metadata": {"annotations": {"canary.aistack.dev/gw-1": report}}}


ANALYSIS = {"windowSeconds": 60, "minRequests": 20, "maxErrorRateIncrease": 0.05, "maxLatencyRatio": 2,
            "steps": [50, 100], "stepIntervalSeconds": 30}
GOOD = {"stable": (180, 2, 0.2), "canary": (20, 0, 0.2)}


def test_a_new_canary_starts_at_its_weight() -> None:
    decision = decide(spec(analysis=ANALYSIS), previous=None, lease=None, now=T0)
    assert decision.status["weight"] == 10 and decision.status["verdict"] == "Progressing"
    assert decision.event is not None and decision.event[1] == "CanaryStarted"
    assert decision.recheck_at == T0 + 30
    manual = decide(spec(), previous=None, lease=None, now=T0).status
    assert manual["verdict"] == "Manual" and manual["weight"] == 10


def test_a_passing_canary_follows_its_steps_to_promoted() -> None:
    canary = spec(analysis=ANALYSIS)
    status = decide(canary, previous=None, lease=None, now=T0).status
    early = decide(canary, previous=status, lease=lease(**GOOD, at=T0 + 10), now=T0 + 10)
    assert early.status["weight"] == 10 and early.event is None and early.recheck_at == T0 + 30
    stepped = decide(canary, previous=early.status, lease=lease(**GOOD, at=T0 + 31), now=T0 + 31)
    assert (stepped.status["weight"], stepped.status["step"]) == (50, 0)
    assert stepped.status["verdict"] == "Progressing"
    assert stepped.event is not None and stepped.event[1] == "CanaryStepped"
    assert "10 -> 50" in stepped.event[2]
    last = decide(canary, previous=stepped.status, lease=lease(**GOOD, at=T0 + 62), now=T0 + 62)
    assert (last.status["weight"], last.status["verdict"]) == (100, "Promoted")
    assert last.event is not None and last.event[1] == "CanaryPromoted"
    broken = lease(stable=(0, 0, 0.2), canary=(50, 50, 9), at=T0 + 90)
    after = decide(canary, previous=last.status, lease=broken, now=T0 + 90)
    assert after.status == last.status and after.event is None  # promoted: nothing judged any more


def test_a_canary_with_more_errors_is_rolled_back_to_zero_and_stays_there() -> None:
    canary = spec(analysis=ANALYSIS)
    status = decide(canary, previous=None, lease=None, now=T0).status
    failing = lease(stable=(180, 2, 0.2), canary=(20, 5, 0.2), at=T0 + 5)
    decision = decide(canary, previous=status, lease=failing, now=T0 + 5)
    assert (decision.status["weight"], decision.status["verdict"]) == (0, "RolledBack")
    assert "error rate 25.0% against stable 1.1%" in decision.status["reason"]
    assert decision.event is not None and decision.event[:2] == ("Warning", "CanaryRolledBack")
    again = decide(canary, previous=decision.status, lease=lease(**GOOD, at=T0 + 100), now=T0 + 100)
    assert again.status["weight"] == 0 and again.event is None
    # a changed canary (GitOps: a fixed version) starts again
    fixed = decide(spec(name="org/model-v3", analysis=ANALYSIS), previous=decision.status, lease=None,
                   now=T0 + 200)
    assert (fixed.status["weight"], fixed.status["verdict"]) == (10, "Progressing")


def test_a_slow_canary_is_rolled_back_on_latency() -> None:
    canary = spec(analysis=ANALYSIS)
    status = decide(canary, previous=None, lease=None, now=T0).status
    slow = lease(stable=(180, 0, 0.2), canary=(20, 0, 3.0), at=T0 + 5)
    decision = decide(canary, previous=status, lease=slow, now=T0 + 5)
    assert decision.status["verdict"] == "RolledBack" and "over 2x stable" in decision.status["reason"]


def test_too_few_canary_requests_decide_nothing_and_stale_reports_count_as_none() -> None:
    canary = spec(analysis=ANALYSIS)
    status = decide(canary, previous=None, lease=None, now=T0).status
    few = decide(canary, previous=status, lease=lease(stable=(100, 0, 0.1), canary=(19, 19, 0.1), at=T0 + 40),
                 now=T0 + 40)
    assert few.status["weight"] == 10 and "waiting for 20 canary requests" in few.status["reason"]
    stale = decide(canary, previous=status, lease=lease(stable=(100, 0, 0.1), canary=(50, 50, 0.1), at=T0),
                   now=T0 + 200)
    assert stale.status["verdict"] == "Progressing"


def test_manual_with_analysis_rolls_back_but_never_steps() -> None:
    canary = spec(analysis={**ANALYSIS, "steps": []})
    status = decide(canary, previous=None, lease=None, now=T0).status
    assert status["verdict"] == "Manual"
    passing = decide(canary, previous=status, lease=lease(**GOOD, at=T0 + 500), now=T0 + 500)
    assert passing.status["weight"] == 10 and passing.recheck_at is None
    failing = decide(canary, previous=status, lease=lease(stable=(100, 0, 0.1), canary=(30, 30, 0.1),
                                                          at=T0 + 500), now=T0 + 500)
    assert failing.status["verdict"] == "RolledBack"


def test_latency_is_not_compared_without_enough_stable_requests() -> None:
    a, b = VersionStats(), VersionStats()
    for _ in range(30):
        b.observe(5.0, ok=True)
    passed, why = judge(spec(analysis=ANALYSIS).analysis, a, b)  # type: ignore[arg-type]
    assert passed is True and "latency not compared" in why


STACK = """
apiVersion: aistack.dev/v1alpha1
kind: AIStack
metadata: {name: shop, namespace: ai, uid: 0000-1111}
spec:
  model:
    provider: vllm
    name: Qwen/Qwen2.5-7B-Instruct
    vllm: {cache: {prePull: true, size: 40Gi}}
    canary:
      name: Qwen/Qwen2.5-7B-Instruct-1M
      weight: 10
      stickyBy: header
      stickyHeader: X-Session-Id
      analysis: {steps: [50, 100]}
"""


def rendered(weight: int | None = None, text: str = STACK) -> dict[tuple[str, str], dict[str, Any]]:
    stack = parse_stack(yaml.safe_load(text))
    return {(m["kind"], m["metadata"]["name"]): m for m in render(stack, version="1.0.0",
                                                                   canary_weight=weight).manifests}


def gateway_config(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    data = objects[("ConfigMap", "shop-gateway-config")]["data"]
    return yaml.safe_load(next(iter(data.values())))


def test_the_canary_has_its_own_deployment_and_services_its_stable_does_not_select() -> None:
    objects = rendered()
    stable, canary = objects[("Deployment", "shop-model")], objects[("Deployment", "shop-model-canary")]
    assert canary["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "model-canary"
    assert stable["spec"]["selector"] != canary["spec"]["selector"]
    assert canary["spec"]["replicas"] == 1
    args = canary["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model") + 1] == "/model-cache/models/Qwen--Qwen2.5-7B-Instruct-1M"  # pulled
    assert args[args.index("--served-model-name") + 1] == "Qwen/Qwen2.5-7B-Instruct"  # one name to both
    pod = canary["spec"]["template"]["spec"]
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    assert "ephemeral" in cache  # not the stable's claim
    assert pod["initContainers"][0]["name"] == "pull" and "Qwen/Qwen2.5-7B-Instruct-1M" in \
        " ".join(pod["initContainers"][0]["args"])
    assert objects[("Service", "shop-model-canary")]["spec"]["selector"]["app.kubernetes.io/component"] == \
        "model-canary"
    assert objects[("Service", "shop-model-canary-replicas")]["spec"]["clusterIP"] == "None"
    assert ("Lease", "shop-model-load") in objects and ("Role", "shop-gateway-load") in objects


def test_the_gateway_gets_the_weight_in_force_without_a_pod_restart() -> None:
    spec_weight, in_force = rendered(), rendered(weight=0)
    canary = gateway_config(spec_weight)["model"]["canary"]
    assert canary["weight"] == 10 and canary["stickyBy"] == "header"
    assert canary["reportLease"] == "shop-model-load"
    assert canary["upstream"]["baseUrl"] == "http://shop-model-canary.ai.svc.cluster.local:8000/v1"
    assert canary["upstream"]["replicas"]["dnsName"] == "shop-model-canary-replicas.ai.svc.cluster.local"
    assert gateway_config(in_force)["model"]["canary"]["weight"] == 0
    template = [o[("Deployment", "shop-gateway")]["spec"]["template"] for o in (spec_weight, in_force)]
    assert template[0] == template[1]


def test_an_adapter_canary_runs_on_the_stable_pods() -> None:
    doc = yaml.safe_load(STACK)
    doc["spec"]["model"]["vllm"]["adapters"] = [{"name": "support-v2", "source": "hf://acme/support-v2"}]
    doc["spec"]["model"]["canary"] = {"adapter": "support-v2", "weight": 20}
    objects = rendered(text=yaml.safe_dump(doc))
    assert ("Deployment", "shop-model-canary") not in objects
    canary = gateway_config(objects)["model"]["canary"]
    assert canary["upstream"]["model"] == "support-v2" and canary["weight"] == 20
    assert canary["upstream"]["baseUrl"] == "http://shop-model.ai.svc.cluster.local:8000/v1"
    assert "reportLease" not in canary  # no analysis: nothing reported


def test_an_api_canary_is_another_model_name_at_the_endpoint() -> None:
    doc = yaml.safe_load(STACK)
    doc["spec"]["model"] = {"provider": "openai", "name": "gpt-4o-mini",
                            "openai": {"baseUrl": "https://api.openai.com/v1",
                                       "apiKeySecretRef": {"name": "openai", "key": "apiKey"}},
                            "canary": {"name": "gpt-4.1-mini", "weight": 5}}
    objects = rendered(text=yaml.safe_dump(copy.deepcopy(doc)))
    canary = gateway_config(objects)["model"]["canary"]
    assert canary["upstream"]["model"] == "gpt-4.1-mini" and canary["upstream"]["apiKeyEnv"]
    assert not any(name.endswith("-canary") for _, name in objects)


def test_a_canary_takes_no_traffic_until_its_pods_are_ready() -> None:
    canary = spec(analysis=ANALYSIS)
    waiting = decide(canary, previous=None, lease=None, now=T0, ready=False)
    assert waiting.status["weight"] == 0 and waiting.status["since"] is None and waiting.event is None
    assert "waiting for the canary's pods" in waiting.status["reason"]
    still = decide(canary, previous=waiting.status, lease=lease(stable=(100, 0, 0.1), canary=(30, 30, 0.1),
                                                                 at=T0 + 5), now=T0 + 5, ready=False)
    assert still.status == waiting.status  # nothing judged before it started
    started = decide(canary, previous=still.status, lease=None, now=T0 + 60, ready=True)
    assert (started.status["weight"], started.status["verdict"]) == (10, "Progressing")
    assert started.event is not None and started.event[1] == "CanaryStarted"
    assert started.recheck_at == T0 + 60 + 30
