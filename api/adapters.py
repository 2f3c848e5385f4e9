"""The adapter agent's contract: what the operator (or `aistack up`) tells it, where adapters live in
the model cache, and what it reports.

The agent (`aistack engine adapters`, `aistack.runtime.engine.adapter_agent`) runs beside each vLLM
engine. It reads `AdapterList` from a file (in the cluster a mounted ConfigMap, which the kubelet
refreshes in place, so a changed list reaches running pods without a restart), pulls what is
missing into the cache with the base weights' pull (`aistack.runtime.engine.pull`), checks each
adapter's rank, and loads and unloads adapters through the engine's runtime LoRA endpoints on
loopback. Its report (`AdapterReport`) is a JSON file beside it and its log lines.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import Field

from aistack.api.model_cache import CACHE_PATH
from aistack.api.types import ApiModel
from aistack.api.v1alpha1.model import ModelSpec

ADAPTERS_CONFIG_DIR = "/etc/aistack/adapters"
"""Where the model pods mount the adapter list's ConfigMap (a folder mount: a subPath would never
be refreshed by the kubelet)."""
ADAPTERS_FILE = "adapters.json"
ADAPTERS = ("engine", "adapters")
"""The agent's command: `aistack engine adapters --config FILE --engine URL`."""
LOAD_PATH = "/load_lora_adapter"
UNLOAD_PATH = "/unload_lora_adapter"
"""vLLM's runtime LoRA endpoints, under `/v1` (with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=1`)."""

Phase = Literal["Pending", "Downloading", "Loaded", "Failed"]


class AdapterEntry(ApiModel):
    name: str
    source: str
    rank: int | None = None


class AdapterList(ApiModel):
    """The agent's input: the base's served name, the engine's largest rank, the adapters."""

    base: str
    max_rank: int
    adapters: list[AdapterEntry] = Field(default_factory=list)


class AdapterState(ApiModel):
    name: str
    source: str
    phase: Phase
    reason: str | None = None
    """Why it is Failed (or what it waits on)."""


class AdapterReport(ApiModel):
    """What one agent holds now, adapter by adapter, in the list's order."""

    adapters: list[AdapterState] = Field(default_factory=list)


def adapter_list(model: ModelSpec) -> AdapterList:
    """The list for `model` (provider vllm)."""
    vllm = model.vllm
    assert vllm is not None
    return AdapterList(base=model.public_name, max_rank=vllm.lora_settings.max_rank,
                       adapters=[AdapterEntry(name=a.name, source=a.source, rank=a.rank)
                                 for a in vllm.adapters])


def is_remote(source: str) -> bool:
    return source.startswith(("hf://", "s3://"))


def parse_hf(source: str) -> tuple[str, str | None]:
    """`hf://org/repo@rev` -> (`org/repo`, `rev`)."""
    repo, _, revision = source.removeprefix("hf://").partition("@")
    return repo, revision or None


def adapter_dir(source: str, root: str = CACHE_PATH) -> str:
    """Where an adapter's files are: a remote source is pulled into a folder of its own, named by
    the source (a new revision is a new folder, so files an engine has loaded are never replaced
    under it); a path is a folder under `root` (the model cache, or locally the manifest's folder)."""
    if not is_remote(source):
        return f"{root}/{source}"
    readable = re.sub(r"[^A-Za-z0-9._-]", "-", source.split("://", 1)[1])[:80]
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    return f"{root}/adapters/{readable}-{digest}"
