"""AIStack health for GitOps tools, run over the same status fixtures:
the Argo CD Lua check (deploy/argocd/health.lua, in Lua 5.1 like Argo CD's gopher-lua) and the
Flux `healthCheckExprs` (deploy/gitops/flux/kustomizations.yaml, in cel-python)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from aistack.api import conventions

ROOT = Path(__file__).resolve().parents[4]
HEALTH_LUA = ROOT / "deploy" / "argocd" / "health.lua"
ARGOCD_CM = ROOT / "deploy" / "argocd" / "argocd-cm.yaml"
FLUX = ROOT / "deploy" / "gitops" / "flux" / "kustomizations.yaml"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """Run the script as Argo CD does: global `obj`, the script returns `hs`."""
    from lupa.lua51 import LuaRuntime  # Argo CD embeds gopher-lua, a Lua 5.1

    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(HEALTH_LUA.read_text())
    return hs["status"], hs["message"]


def stack(*conditions: dict[str, Any], generation: int = 3, observed: int | None = 3, **status: Any) -> dict:
    body: dict[str, Any] = {"apiVersion": "aistack.dev/v1alpha1", "kind": "AIStack",
                            "metadata": {"name": "rag", "generation": generation}, "spec": {}}
    if conditions or status or observed is not None:
        body["status"] = {"conditions": list(conditions), **status}
        if observed is not None:
            body["status"]["observedGeneration"] = observed
    return body


def cond(type_: str, status: str, reason: str = "", message: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message, **extra}


READY = cond("Ready", "True", "Ready", "serving at http://rag-gateway.ai.svc:8080")


CASES = [
    pytest.param(stack(READY, cond("ModelReady", "True")), "Healthy",
                 "serving at http://rag-gateway.ai.svc:8080",
                 id="ready"),
    pytest.param(stack(cond("Ready", "True")), "Healthy", "Ready", id="ready-without-message"),
    pytest.param(stack(cond("Ready", "False", "InvalidSpec", "spec is invalid"),
                       cond("ModelReady", "True"),
                       cond("RetrievalReady", "False", "InvalidSpec",
                            "collection 'kb' has dimension 384, embedder 768"),
                       cond("GatewayReady", "False", "Progressing", "waiting for the model")),
                 "Degraded", "RetrievalReady: InvalidSpec: collection 'kb' has dimension 384, embedder 768",
                 id="invalid-spec-names-the-failing-layer"),
    pytest.param(stack(cond("Ready", "False", "InvalidSpec", "spec.model: required")),
                 "Degraded", "Ready: InvalidSpec: spec.model: required", id="invalid-spec-without-layers"),
    pytest.param(stack(cond("Ready", "False", "Progressing", "1 of 2 layers ready"),
                       cond("ModelReady", "False", "Progressing", "vLLM is loading weights")),
                 "Progressing", "ModelReady: Progressing: vLLM is loading weights", id="converging"),
    pytest.param(stack(cond("Ready", "False", "", ""), phase="Failed"), "Degraded", "Ready: : ",
                 id="no-reason-but-failed-phase"),
    pytest.param(stack(cond("Ready", "Unknown", "", "")), "Progressing", "Waiting for the Ready condition",
                 id="ready-unknown"),
    pytest.param(stack(observed=None), "Progressing", "Waiting for the aistack operator to report status",
                 id="no-status"),
    pytest.param(stack(READY, observed=2), "Progressing",
                 "Waiting for the aistack operator to observe generation 3", id="stale-observed-generation"),
    pytest.param(stack(cond("Ready", "True", "Ready", "old", observedGeneration=2)), "Progressing", "old",
                 id="stale-condition"),
    pytest.param(stack(cond("ModelReady", "True")), "Progressing", "Waiting for the Ready condition",
                 id="no-ready-condition"),
]


@pytest.mark.parametrize(("obj", "expected", "message"), CASES)
def test_status_maps_to_argocd_health(obj: dict[str, Any], expected: str, message: str) -> None:
    assert health(obj) == (expected, message)


def test_the_lua_knows_every_layer_condition() -> None:
    listed = re.search(r"local LAYERS = \{(.*?)\}", HEALTH_LUA.read_text())
    assert listed is not None, f"{HEALTH_LUA} has no `local LAYERS = {{...}}`"
    assert tuple(re.findall(r'"(\w+)"', listed.group(1))) == conventions.LAYER_CONDITIONS
    assert 'byType["Ready"]' in HEALTH_LUA.read_text() and conventions.CONDITION_READY == "Ready"


def test_the_argocd_cm_snippet_carries_the_same_lua() -> None:
    cm = yaml.safe_load(ARGOCD_CM.read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"]["resource.customizations.health.aistack.dev_AIStack"] == HEALTH_LUA.read_text()


def flux_exprs() -> list[dict[str, str]]:
    docs = [d for d in yaml.safe_load_all(FLUX.read_text()) if d["kind"] == "Kustomization"]
    exprs = [d["spec"]["healthCheckExprs"] for d in docs]
    assert len(docs) == 3 and all(e == exprs[0] for e in exprs), "every stage uses the same health check"
    (check,) = exprs[0]
    assert (check["apiVersion"], check["kind"]) == ("aistack.dev/v1alpha1", "AIStack")
    return [check]


def desugar(expr: str) -> str:
    """cel-python lacks CEL optionals: `x.?f.orValue(d)` -> `(has(x.f) ? x.f : d)`, same meaning."""
    return re.sub(r"([A-Za-z_][\w.]*)\.\?(\w+)\.orValue\(([^()]*)\)", r"(has(\1.\2) ? \1.\2 : \3)", expr)


@pytest.mark.parametrize(("obj", "expected", "message"), CASES)
def test_flux_health_expressions_agree_with_the_lua(obj: dict[str, Any], expected: str, message: str) -> None:
    import celpy

    (check,) = flux_exprs()
    assert "status.?conditions.orValue([])" in check["current"]
    env = celpy.Environment()
    # Flux evaluates the object's fields; an object without status is given an empty one here.
    activation = {"metadata": celpy.json_to_cel(obj["metadata"]),
                  "status": celpy.json_to_cel(obj.get("status", {}))}
    results = {key: bool(env.program(env.compile(desugar(check[key]))).evaluate(activation))
               for key in ("current", "failed")}
    assert not (results["current"] and results["failed"])
    flux = "Healthy" if results["current"] else "Degraded" if results["failed"] else "Progressing"
    assert flux == expected
