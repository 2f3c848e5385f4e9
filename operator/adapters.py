"""`status.model.adapters` and the adapter Events, from what the adapter agents report.

Each model pod's agent writes its adapters' state on the Lease `<stack>-model-adapters`
(`aistack.api.adapters`); the operator hears each write through its watch of the stack's children
(no pod is polled), sums the fresh reports per adapter (`adapter_statuses()`: Failed where one pod
failed, with its reason; Loaded where every reporting pod holds it) and posts an Event for each
change against the status it wrote last (`adapter_events()`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aistack.api.adapters import LEASE_COMPONENT, adapter_events, adapter_statuses
from aistack.api.conventions import child_name
from aistack.api.v1alpha1 import AIStack

Event = tuple[str, str, str]


def adapter_state(stack: AIStack, *, live: Mapping[tuple[str, str], Mapping[str, Any]],
                  previous: Mapping[str, Any], now: float) -> tuple[list[dict[str, Any]] | None, list[Event]]:
    """(`status.model.adapters`, the Events to post); (None, []) for a model without LoRA."""
    vllm = stack.spec.model.vllm
    if stack.spec.model.provider != "vllm" or vllm is None or not vllm.lora_enabled:
        return None, []
    lease = live.get(("Lease", child_name(stack.name, LEASE_COMPONENT))) or {}
    annotations = (lease.get("metadata") or {}).get("annotations") or {}
    statuses = adapter_statuses(annotations, [a.name for a in vllm.adapters], now=now)
    before = (previous.get("model") or {}).get("adapters") or []
    return [s.model_dump(exclude_none=True) for s in statuses], adapter_events(before, statuses)
