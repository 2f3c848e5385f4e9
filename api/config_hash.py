"""The promotable configuration of a stack and its hash.

The hash identifies *what the stack does* (model and serving args, prompts, orchestration,
retrieval parameters and embedder, guardrails) and ignores what a stage owns (replicas, GPU
type, endpoints, Secrets, storage). The operator writes it to `status.configHash`, the runtime
tags traces with it, `aistack eval` logs it with each run, and `aistack promote` looks runs up
by it: an evaluation run counts for exactly the configuration it evaluated.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aistack.api.v1alpha1 import AIStackSpec

HASH_LENGTH = 16


def promotable_config(spec: AIStackSpec) -> dict[str, Any]:
    """The behaviour-defining part of a spec, in wire form (camelCase), stage fields removed."""
    wire = spec.to_wire()
    model = wire["model"]
    out: dict[str, Any] = {
        "model": {
            "provider": model["provider"],
            "name": model["name"],
            "servedName": spec.model.public_name,
            "defaults": model.get("defaults", {}),
        },
        "orchestration": _orchestration(wire.get("orchestration", {})),
    }
    if spec.model.vllm is not None:
        vllm = model["vllm"]
        out["model"]["vllm"] = {
            "image": vllm["image"],
            "tensorParallelSize": spec.model.vllm.effective_tensor_parallel_size,
            "maxModelLen": vllm.get("maxModelLen"),
            "gpuMemoryUtilization": vllm["gpuMemoryUtilization"],
            "extraArgs": vllm.get("extraArgs", []),
        }
        if spec.model.vllm.lora_enabled:  # absent without LoRA: the hashes of existing stacks stay
            lora = spec.model.vllm.lora_settings
            out["model"]["vllm"]["lora"] = {"maxRank": lora.max_rank, "maxAdapters": lora.max_adapters,
                                            "maxAdaptersPerBatch": lora.adapters_per_batch}
            out["model"]["vllm"]["adapters"] = vllm.get("adapters", [])
    if spec.retrieval is not None:
        r = wire["retrieval"]
        out["retrieval"] = {
            "distance": r["collection"]["distance"],
            "embedder": {k: r["embedder"][k] for k in ("provider", "model", "dimension")},
            "topK": r["topK"],
            "scoreThreshold": r.get("scoreThreshold"),
            "maxContextTokens": r["maxContextTokens"],
            "tenantField": r.get("tenantField"),
            "chunking": r["chunking"],
        }
    if spec.guardrails is not None:
        g = wire["guardrails"]
        out["guardrails"] = {
            k: g.get(k)
            for k in ("input", "output", "policy", "blockedTerms", "maxInputChars", "maxOutputChars",
                      "refusalMessage", "model", "configMapRef", "failOpen")
        }
    return out


def _orchestration(orch: dict[str, Any]) -> dict[str, Any]:
    tools = [
        {k: t.get(k) for k in ("name", "description", "method", "parameters")}
        for t in orch.get("tools", [])
    ]
    return {**{k: v for k, v in orch.items() if k != "tools"}, "tools": tools}


def config_hash(spec: AIStackSpec) -> str:
    """Stable short hash of `promotable_config(spec)` (same spec, same hash, any machine)."""
    canonical = json.dumps(promotable_config(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]
