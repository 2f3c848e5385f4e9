"""What the render tests share: lookups over rendered manifests, and a stack that references a
Secret from every field that can hold one. The builders of stacks (`make_stack`) are one level up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

Manifests = list[dict[str, Any]]


def _by_kind_name(manifests: Manifests) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


def _pod_specs(manifests: Manifests) -> Manifests:
    return [m["spec"]["template"]["spec"] for m in manifests
            if m["kind"] in ("Deployment", "StatefulSet", "Job")]


def _containers(manifests: Manifests) -> Manifests:
    return [c for spec in _pod_specs(manifests)
            for c in [*spec.get("initContainers", []), *spec["containers"]]]


@pytest.fixture
def by_kind_name() -> Callable[[Manifests], dict[tuple[str, str], dict[str, Any]]]:
    """Manifests by (kind, name)."""
    return _by_kind_name


@pytest.fixture
def pod_specs() -> Callable[[Manifests], Manifests]:
    """The pod spec of every workload (Deployment, StatefulSet, Job)."""
    return _pod_specs


@pytest.fixture
def containers() -> Callable[[Manifests], Manifests]:
    """Every container of every workload."""
    return _containers


@pytest.fixture
def all_secrets() -> dict[str, Any]:
    """A patch for `make_stack` that references a Secret from every field that can hold one."""
    return {
        "spec": {
            "model": {"fallback": {"baseUrl": "https://fallback.example.com/v1", "model": "m",
                                   "apiKeySecretRef": {"name": "fb", "key": "k1"}}},
            "retrieval": {"vectorStore": {"managed": None, "external": {
                "url": "https://qdrant.example.com", "apiKeySecretRef": {"name": "qd", "key": "k2"}}},
                "embedder": {"provider": "openai", "model": "text-embedding-3-small",
                             "baseUrl": "https://emb.example.com/v1",
                             "apiKeySecretRef": {"name": "emb", "key": "k3"}}},
            "orchestration": {"tools": [{"name": "t", "description": "d", "endpoint": "https://t.example.com",
                                         "authSecretRef": {"name": "tool", "key": "k4"}}]},
            "observability": {"mlflow": {"managed": None, "external": {
                "trackingUri": "https://mlflow.example.com", "tokenSecretRef": {"name": "ml", "key": "k5"}}}},
        },
    }
