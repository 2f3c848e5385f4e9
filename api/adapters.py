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
import json
import math
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, ValidationError

from aistack.api.model_cache import CACHE_PATH
from aistack.api.types import ApiModel
from aistack.api.v1alpha1.model import ModelSpec
from aistack.api.v1alpha1.stack import AdapterStatus

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


# --- the agents' reports on the Lease `<stack>-model-adapters`, and the operator's sum of them ---

LEASE_COMPONENT = "model-adapters"
"""`child_name(stack, LEASE_COMPONENT)` is the Lease each agent writes its report on."""
ANNOTATION_PREFIX = "adapters.aistack.dev/"
HEARTBEAT_SECONDS = 300.0
REPORT_TTL_SECONDS = 900.0
"""A report older than this is a gone pod's (an agent writes on each change and every heartbeat)."""
_KEY = re.compile(r"[^A-Za-z0-9._-]")


def report_key(pod: str) -> str:
    """One pod's annotation (its name part: 63 characters at most)."""
    name = _KEY.sub("-", pod).strip("-._")[-63:].strip("-._") or "model"
    return ANNOTATION_PREFIX + name


def encode_report(report: AdapterReport, *, at: float) -> str:
    """Compact: `{"at": ..., "adapters": [[name, phase, reason], ...]}` (Failed only has a reason)."""
    rows = [[s.name, s.phase, *([s.reason] if s.phase == "Failed" and s.reason else [])]
            for s in report.adapters]
    return json.dumps({"at": round(at, 3), "adapters": rows}, separators=(",", ":"))


def decode_report(text: str) -> tuple[float, AdapterReport] | None:
    """None for anything that is not a report (hand-edited, truncated)."""
    try:
        data = json.loads(text)
        at = float(data["at"])
        states = [AdapterState(name=str(row[0]), source="", phase=row[1],
                               reason=str(row[2]) if len(row) > 2 else None) for row in data["adapters"]]
    except (ValueError, TypeError, KeyError, IndexError, ValidationError):
        return None
    return (at, AdapterReport(adapters=states)) if math.isfinite(at) else None


def adapter_statuses(annotations: Mapping[str, str], names: list[str], *,
                     now: float) -> list[AdapterStatus]:
    """Each listed adapter's state from the fresh reports on the Lease, in the list's order."""
    reports: list[tuple[str, AdapterReport]] = []
    for key, value in sorted(annotations.items()):
        if not key.startswith(ANNOTATION_PREFIX):
            continue
        decoded = decode_report(value)
        if decoded is not None and now - decoded[0] <= REPORT_TTL_SECONDS:
            reports.append((key.removeprefix(ANNOTATION_PREFIX), decoded[1]))
    out = []
    for name in names:
        states = [(pod, s) for pod, r in reports for s in r.adapters if s.name == name]
        loaded = sum(1 for _, s in states if s.phase == "Loaded")
        failed = next(((pod, s) for pod, s in states if s.phase == "Failed"), None)
        if failed is not None:
            out.append(AdapterStatus(name=name, phase="Failed", replicas=loaded,
                                     reason=f"{failed[1].reason} (pod {failed[0]})"))
        elif any(s.phase == "Downloading" for _, s in states):
            out.append(AdapterStatus(name=name, phase="Downloading", replicas=loaded))
        elif states and loaded == len(states):
            out.append(AdapterStatus(name=name, phase="Loaded", replicas=loaded))
        else:
            out.append(AdapterStatus(name=name, phase="Pending", replicas=loaded))
    return out


def adapter_events(before: list[Mapping[str, object]],
                   after: list[AdapterStatus]) -> list[tuple[str, str, str]]:
    """(type, reason, message) for each adapter whose phase (or failure) changed since `before`
    (the previous `status.model.adapters`): AdapterLoaded, AdapterDownloading, AdapterFailed (a
    Warning), AdapterPending; an adapter that left the list: AdapterRemoved."""
    old = {str(s.get("name")): (s.get("phase"), s.get("reason")) for s in before}
    events = []
    for s in after:
        if old.get(s.name) == (s.phase, s.reason):
            continue
        if s.phase == "Failed":
            events.append(("Warning", "AdapterFailed", f"adapter {s.name}: {s.reason}"))
        elif s.phase == "Loaded":
            events.append(("Normal", "AdapterLoaded", (f"adapter {s.name} loaded on {s.replicas} "
                                                      f"replica{'s' if s.replicas != 1 else ''}")))
        elif s.name in old or s.phase == "Downloading":
            events.append(("Normal", f"Adapter{s.phase}", f"adapter {s.name}: {s.phase.lower()}"))
    for name in old.keys() - {s.name for s in after}:
        events.append(("Normal", "AdapterRemoved", f"adapter {name} left the list: unloaded"))
    return events
