"""Layer 3: a managed Qdrant (StatefulSet with a volume per pod, and its Service).

An external Qdrant renders nothing; the collection itself is not a Kubernetes object and is
created by the operator through qdrant-client (`aistack.operator.collection`).
"""

from __future__ import annotations

from typing import Any

from aistack.api import resources as default_resources
from aistack.api.conventions import (
    COMPONENT_VECTOR_STORE,
    CONFIG_HASH_ANNOTATION,
    QDRANT_GRPC_PORT,
    QDRANT_HTTP_PORT,
)
from aistack.operator.render.common import (
    Manifest,
    RenderContext,
    container_security,
    content_hash,
    http_probe,
    labels,
    metadata,
    pod_security,
    resources,
    selector_labels,
    service,
)
from aistack.operator.render.endpoints import store_name

STORAGE_PATH = "/qdrant/storage"


def render_retrieval(ctx: RenderContext) -> list[Manifest]:
    name = store_name(ctx)
    if name is None:
        return []
    retrieval = ctx.stack.spec.retrieval
    managed = retrieval.vector_store.managed if retrieval is not None else None
    assert managed is not None  # store_name is None unless the store is managed
    container: dict[str, Any] = {
        "name": "qdrant",
        "image": managed.image,
        "env": [{"name": "QDRANT__TELEMETRY_DISABLED", "value": "true"}],
        "ports": [
            {"name": "http", "containerPort": QDRANT_HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": QDRANT_GRPC_PORT, "protocol": "TCP"},
        ],
        "resources": resources(managed.resources, default_resources.QDRANT),
        "startupProbe": http_probe("/readyz", "http", period=5, failures=60),
        "readinessProbe": http_probe("/readyz", "http", period=5, failures=3),
        "livenessProbe": http_probe("/livez", "http", period=10, failures=3),
        "volumeMounts": [
            {"name": "storage", "mountPath": STORAGE_PATH},
            {"name": "snapshots", "mountPath": "/qdrant/snapshots"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": container_security(),
    }
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": managed.storage.size}},
    }
    if managed.storage.storage_class_name:
        claim_spec["storageClassName"] = managed.storage.storage_class_name
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": metadata(ctx, name=name, component=COMPONENT_VECTOR_STORE),
        "spec": {
            "replicas": managed.replicas,
            "serviceName": name,
            "selector": {"matchLabels": selector_labels(ctx.stack, COMPONENT_VECTOR_STORE)},
            # Volumes outlive the StatefulSet: data is never lost with the AIStack by default.
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "template": {
                "metadata": {
                    "labels": labels(ctx.stack, COMPONENT_VECTOR_STORE),
                    "annotations": {CONFIG_HASH_ANNOTATION: content_hash(container)},
                },
                "spec": {
                    "securityContext": pod_security(),
                    "automountServiceAccountToken": False,  # Qdrant never calls the Kubernetes API
                    "containers": [container],
                    "volumes": [
                        {"name": "snapshots", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "storage", "labels": labels(ctx.stack, COMPONENT_VECTOR_STORE)},
                "spec": claim_spec,
            }],
        },
    }
    return [
        service(ctx, name=name, component=COMPONENT_VECTOR_STORE, ports=[("http", QDRANT_HTTP_PORT),
                                                                        ("grpc", QDRANT_GRPC_PORT)]),
        statefulset,
    ]
