"""What the operator is started with: `run.py` builds it from the flags, tests build their own."""

from __future__ import annotations

from dataclasses import dataclass, field

from kubernetes.client import Configuration

from aistack.api.images import package_version
from aistack.operator.collection import QdrantFactory, default_qdrant_factory
from aistack.operator.machinery.leader import LeaseOptions
from aistack.operator.machinery.peering import PeeringOptions, own_identity


@dataclass(frozen=True, kw_only=True)
class OperatorOptions:
    """Everything the handlers need from outside; tests swap the Qdrant factory and timings."""

    configuration: Configuration
    qdrant_factory: QdrantFactory = default_qdrant_factory
    version: str = field(default_factory=package_version)
    drift_interval: float = 300.0
    """Seconds between full re-checks of a stack (child changes are handled at once)."""
    retry_delay: float = 5.0
    """Seconds before the first retry of a reconcile that could not finish (API or Qdrant down, a
    layer starting); each further failure in a row doubles it, with jitter (`WorkQueue.backoff`)."""
    max_retry_delay: float = 300.0
    """The longest a stack's retries back off to."""
    debounce: float = 0.1
    """Seconds to gather a burst of child events into one reconcile."""
    sync_timeout: float = 60.0
    """Seconds the startup waits for the first listing of the children before retrying."""
    identity: str = field(default_factory=own_identity)
    """This process among its peers and Lease candidates (the pod's name in a cluster)."""
    peering: PeeringOptions | None = None
    """kopf peering (name, priority); None: standalone, no guard against a second operator."""
    leader: LeaseOptions | None = None
    """Leader election between replicas (a Lease); None: this process runs at once."""
