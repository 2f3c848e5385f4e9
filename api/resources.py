"""Default resources of every container the operator renders, and how a spec overrides them.

A pod without requests is scheduled as if it cost nothing, and one without a memory limit can
take a node's memory (a 50 MB document drove ingestion to 1.8 GB). So every container gets a
CPU and memory request and a memory limit. The spec's `resources` win key by key; a memory
request above the default limit raises the limit to the request, so an override of the
request alone never renders a pod the API refuses (limit below request). No CPU limit: CPU is
throttled, not killed, and a limit would only add latency to the gateway's bursts.

The numbers are what each component needs at rest with the default models, with headroom:
the gateway and the sidecar load MiniLM or NeMo (~0.7 GB), ingestion embeds in batches of
256 chunks under `maxFileSize`, vLLM's host memory holds a 7B model's weights while loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from aistack.api.types import Resources, quantity_value


@dataclass(frozen=True)
class ResourceDefaults:
    cpu: str
    """CPU request."""
    memory: str
    """Memory request."""
    memory_limit: str


GATEWAY: Final = ResourceDefaults(cpu="250m", memory="1Gi", memory_limit="2Gi")
GUARDRAILS_SIDECAR: Final = ResourceDefaults(cpu="250m", memory="1Gi", memory_limit="2Gi")
QDRANT: Final = ResourceDefaults(cpu="500m", memory="1Gi", memory_limit="4Gi")
MLFLOW: Final = ResourceDefaults(cpu="250m", memory="512Mi", memory_limit="2Gi")
VLLM: Final = ResourceDefaults(cpu="2", memory="16Gi", memory_limit="32Gi")
INGESTION_JOB: Final = ResourceDefaults(cpu="500m", memory="1Gi", memory_limit="4Gi")
EVALUATION_JOB: Final = ResourceDefaults(cpu="250m", memory="1Gi", memory_limit="2Gi")
COLLECTION_JOB: Final = ResourceDefaults(cpu="100m", memory="256Mi", memory_limit="512Mi")


def with_defaults(spec: Resources, defaults: ResourceDefaults) -> Resources:
    """`spec` with the defaults filled in where it sets nothing (see the module docstring)."""
    requests = {"cpu": defaults.cpu, "memory": defaults.memory, **spec.requests}
    limits = dict(spec.limits)
    if "memory" not in limits:
        limit = defaults.memory_limit
        if quantity_value(requests["memory"]) > quantity_value(limit):
            limit = requests["memory"]
        limits["memory"] = limit
    return Resources(requests=requests, limits=limits)
