"""Layer 6: a managed MLflow tracking server (Deployment, Service, and a PVC when it keeps
its store or artifacts locally). An external tracking URI renders nothing."""

from __future__ import annotations

from typing import Any

from aistack.api import resources as default_resources
from aistack.api.conventions import COMPONENT_TRACKING, CONFIG_HASH_ANNOTATION, MLFLOW_PORT
from aistack.operator.render.common import (
    Manifest,
    RenderContext,
    container_security,
    content_hash,
    http_probe,
    labels,
    metadata,
    pod_security,
    pvc,
    resources,
    secret_env,
    selector_labels,
    service,
    service_account,
)
from aistack.operator.render.endpoints import tracking_name

DATA_PATH = "/mlflow"
BACKEND_ENV = "MLFLOW_BACKEND_STORE_URI"


def render_tracking(ctx: RenderContext) -> list[Manifest]:
    name = tracking_name(ctx)
    if name is None:
        return []
    obs = ctx.stack.spec.observability
    managed = obs.mlflow.managed if obs is not None else None
    assert managed is not None  # tracking_name is None unless MLflow is managed
    data_name = f"{name}-data"
    needs_volume = managed.backend_store_secret_ref is None or managed.artifact_uri is None
    env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}]
    if managed.backend_store_secret_ref is not None:
        env.append(secret_env(BACKEND_ENV, managed.backend_store_secret_ref))
        # Kubernetes expands $(VAR) in args, so the URI never appears in the pod spec.
        backend = f"$({BACKEND_ENV})"
    else:
        backend = f"sqlite:///{DATA_PATH}/mlflow.db"
    artifacts = managed.artifact_uri or f"{DATA_PATH}/artifacts"
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if needs_volume:
        mounts.append({"name": "data", "mountPath": DATA_PATH})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": data_name}})
    container = {
        "name": "mlflow",
        "image": managed.image,
        "command": ["mlflow"],
        "args": ["server", "--host", "0.0.0.0", "--port", str(MLFLOW_PORT),
                 "--backend-store-uri", backend, "--serve-artifacts", "--artifacts-destination", artifacts],
        "env": env,
        "ports": [{"name": "http", "containerPort": MLFLOW_PORT, "protocol": "TCP"}],
        "resources": resources(managed.resources, default_resources.MLFLOW),
        "startupProbe": http_probe("/health", "http", period=5, failures=60),
        "readinessProbe": http_probe("/health", "http", period=10, failures=3),
        "livenessProbe": http_probe("/health", "http", period=20, failures=3, timeout=5),
        "volumeMounts": mounts,
        "securityContext": container_security(),
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(ctx, name=name, component=COMPONENT_TRACKING),
        "spec": {
            "replicas": 1,
            # sqlite on a ReadWriteOnce volume: never two servers at once.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector_labels(ctx.stack, COMPONENT_TRACKING)},
            "template": {
                "metadata": {
                    "labels": labels(ctx.stack, COMPONENT_TRACKING),
                    "annotations": {CONFIG_HASH_ANNOTATION: content_hash(container)},
                },
                "spec": {**service_account(managed.service_account_name), "securityContext": pod_security(),
                         # MLflow never calls the Kubernetes API (a cloud role's token, IRSA, is
                         # projected by its own webhook either way)
                         "automountServiceAccountToken": False,
                         "containers": [container], "volumes": volumes},
            },
        },
    }
    out: list[Manifest] = []
    if needs_volume:
        volume = pvc(ctx, name=data_name, component=COMPONENT_TRACKING, size=managed.storage.size,
                     storage_class=managed.storage.storage_class_name)
        # Runs and artifacts outlive the AIStack: no owner, so no garbage collection, no pruning.
        volume["metadata"].pop("ownerReferences", None)
        out.append(volume)
    out += [service(ctx, name=name, component=COMPONENT_TRACKING, ports=[("http", MLFLOW_PORT)]), deployment]
    return out
