"""Which fields of a spec move between stages, and how a promotion combines two stages.

The promotable fields are the spec paths behind `aistack.api.config_hash.promotable_config`:
what the stack *does*. Everything else is owned by the stage and kept as the target has it.
One addition: `model.vllm.gpu.count` moves with the model, because it sets the default tensor
parallel degree (part of the hash). The evaluation gate (`evaluation`) and the tracking server
(`observability`) are stage-owned on purpose: a change promoted from dev must not be able to
lower prod's thresholds. After combining, `plan` checks that the result has exactly the
source's config hash, so this list and the hash cannot drift apart unnoticed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

Path = tuple[str, ...]

# Paths under `spec` (camelCase), moved from the source stage as they are (set or unset).
PROMOTABLE_PATHS: tuple[Path, ...] = (
    ("model", "provider"),
    ("model", "name"),
    ("model", "servedName"),
    ("model", "defaults"),
    ("model", "vllm", "image"),
    ("model", "vllm", "gpu", "count"),
    ("model", "vllm", "tensorParallelSize"),
    ("model", "vllm", "maxModelLen"),
    ("model", "vllm", "gpuMemoryUtilization"),
    ("model", "vllm", "extraArgs"),
    ("model", "vllm", "adapters"),
    ("model", "vllm", "lora"),
    ("orchestration", "mode"),
    ("orchestration", "systemPrompt"),
    ("orchestration", "promptTemplate"),
    ("orchestration", "maxSteps"),
    ("orchestration", "timeouts"),
    ("retrieval", "collection", "distance"),
    ("retrieval", "embedder", "provider"),
    ("retrieval", "embedder", "model"),
    ("retrieval", "embedder", "dimension"),
    ("retrieval", "topK"),
    ("retrieval", "scoreThreshold"),
    ("retrieval", "maxContextTokens"),
    ("retrieval", "tenantField"),
    ("retrieval", "chunking"),
    ("guardrails", "input"),
    ("guardrails", "output"),
    ("guardrails", "policy"),
    ("guardrails", "blockedTerms"),
    ("guardrails", "maxInputChars"),
    ("guardrails", "maxOutputChars"),
    ("guardrails", "refusalMessage"),
    ("guardrails", "model"),
    ("guardrails", "configMapRef"),
    ("guardrails", "failOpen"),
)
# Tools are a list keyed by name: these keys move, the rest (endpoint, auth, timeout) stay.
TOOL_PROMOTABLE_KEYS = ("name", "description", "method", "parameters")
# Layers that may be added or removed by a promotion. A layer new to the target takes the
# source's stage-owned settings too (there is nothing else to take): flagged for review.
OPTIONAL_LAYERS: tuple[Path, ...] = (("retrieval",), ("guardrails",), ("model", "vllm"), ("model", "openai"))
# A change of any of these makes the target's collection content stale.
REINGEST_PATHS: dict[Path, str] = {
    ("retrieval", "embedder"): "embedder changed",
    ("retrieval", "chunking"): "chunking changed",
    ("retrieval", "collection", "distance"): "vector distance changed (the collection must be recreated)",
}
_EMBEDDER_IDENTITY = ("provider", "model", "dimension")


class Presence(str):
    """The value of a layer or tool that exists, in a Change (shown unquoted)."""


PRESENT = Presence("present")


@dataclass(frozen=True)
class Change:
    """One promotable field that differs: its dotted path and both values (None = unset)."""

    path: str
    old: Any
    new: Any

    def describe(self, *, width: int = 60) -> str:
        return f"{self.path}: {_short(self.old, width)} -> {_short(self.new, width)}"


@dataclass(frozen=True)
class Combined:
    """The target spec after promotion, and what a reviewer must know about it."""

    spec: dict[str, Any]
    changes: list[Change]
    reingest: list[str]
    review: list[str]


def combine(*, source: dict[str, Any], target: dict[str, Any]) -> Combined:
    """The target spec with the source's promotable fields and its own stage-owned ones."""
    out = copy.deepcopy(target)
    review: list[str] = []
    for layer in OPTIONAL_LAYERS:
        in_source, in_target = present(source, layer), present(out, layer)
        if in_source and not in_target:
            put(out, layer, copy.deepcopy(get(source, layer) or {}))
            if get(source, layer):
                review.append(f"{'.'.join(layer)} is new in this stage: its stage-owned settings were "
                              "copied from the source stage; review them")
        elif in_target and not in_source:
            drop(out, layer)
    for path in PROMOTABLE_PATHS:
        value = get(source, path)
        if value is None:
            drop(out, path)
        else:
            put(out, path, copy.deepcopy(value))
    tools, added = _combine_tools(source=source, target=out)
    if tools is None:
        drop(out, ("orchestration", "tools"))
    else:
        put(out, ("orchestration", "tools"), tools)
    review.extend(f"tool {name!r} is new in this stage: its endpoint and auth were copied from the "
                  "source stage; review them" for name in added)
    _prune_empty(out, target, ())
    return Combined(spec=out, changes=diff_promotable(target, out), reingest=reingest_reasons(target, out),
                    review=review)


def present(spec: dict[str, Any], layer: Path) -> bool:
    """Whether a spec has a layer; a vLLM or API model is known by its provider (vllm defaults)."""
    if layer in (("model", "vllm"), ("model", "openai")):
        return get(spec, ("model", "provider")) == layer[-1]
    return get(spec, layer) is not None


def _combine_tools(*, source: dict[str, Any], target: dict[str, Any]) -> tuple[list[dict[str, Any]] | None,
                                                                               list[str]]:
    source_tools = get(source, ("orchestration", "tools"))
    if not source_tools:
        return None, []
    mine = {t.get("name"): t for t in get(target, ("orchestration", "tools")) or []}
    out, added = [], []
    for tool in source_tools:
        kept = mine.get(tool.get("name"))
        if kept is None:
            added.append(str(tool.get("name")))
            out.append(copy.deepcopy(tool))
            continue
        merged = {k: v for k, v in kept.items() if k not in TOOL_PROMOTABLE_KEYS}
        merged.update({k: copy.deepcopy(tool[k]) for k in TOOL_PROMOTABLE_KEYS if k in tool})
        out.append(merged)
    return out, added


def _prune_empty(node: dict[str, Any], original: dict[str, Any], path: Path) -> None:
    """Drop maps that removals left empty, unless the target had them empty itself."""
    for key in list(node):
        child = node[key]
        if isinstance(child, dict):
            _prune_empty(child, original, (*path, key))
            if child == {} and get(original, (*path, key)) != {}:
                del node[key]


def diff_promotable(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """The promotable fields (and tools) that differ between two specs, in a stable order."""
    changes = []
    for layer in OPTIONAL_LAYERS:
        if present(old, layer) != present(new, layer):
            changes.append(Change(".".join(layer), PRESENT if present(old, layer) else None,
                                  PRESENT if present(new, layer) else None))
    for path in PROMOTABLE_PATHS:
        a, b = get(old, path), get(new, path)
        if a != b:
            changes.append(Change(".".join(path), a, b))
    changes.extend(tool_changes(get(old, ("orchestration", "tools")) or [],
                                get(new, ("orchestration", "tools")) or []))
    return changes


def tool_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[Change]:
    """Tools by name: one added or removed, each promotable field of one that changed
    (`orchestration.tools[order_status].description`), and a new order of the same tools."""
    a = {tool.get("name"): _tool_identity(tool) for tool in old}
    b = {tool.get("name"): _tool_identity(tool) for tool in new}
    changes = []
    for name in [*a, *(n for n in b if n not in a)]:
        where = f"orchestration.tools[{name}]"
        if name not in b or name not in a:
            changes.append(Change(where, PRESENT if name in a else None, PRESENT if name in b else None))
            continue
        changes.extend(Change(f"{where}.{key}", a[name][key], b[name][key])
                       for key in TOOL_PROMOTABLE_KEYS if a[name][key] != b[name][key])
    kept_a, kept_b = [n for n in a if n in b], [n for n in b if n in a]
    if kept_a != kept_b:  # the agent sees its tools in this order: part of the behaviour
        changes.append(Change("orchestration.tools (order)", kept_a, kept_b))
    return changes


def _tool_identity(tool: dict[str, Any]) -> dict[str, Any]:
    return {k: tool.get(k) for k in TOOL_PROMOTABLE_KEYS}


def reingest_reasons(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why the target's collection must be re-ingested after the change (empty: it need not)."""
    if get(new, ("retrieval",)) is None:
        return []
    if get(old, ("retrieval",)) is None:
        return ["retrieval is new in this stage: ingest its sources"]
    reasons = []
    for path, reason in REINGEST_PATHS.items():
        a, b = get(old, path), get(new, path)
        if path[-1] == "embedder":
            a = {k: (a or {}).get(k) for k in _EMBEDDER_IDENTITY}
            b = {k: (b or {}).get(k) for k in _EMBEDDER_IDENTITY}
        if a != b:
            reasons.append(reason)
    return reasons


def get(node: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def put(node: dict[str, Any], path: Path, value: Any) -> None:
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def drop(node: dict[str, Any], path: Path) -> None:
    parent = get(node, path[:-1]) if path[:-1] else node
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


def _short(value: Any, width: int) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, Presence):
        return str(value)
    text = " ".join(repr(value).split())  # strings quoted: an empty or spaced value stays visible
    return text if len(text) <= width else f"{text[: width - 12]}... ({len(str(value))} chars)"
