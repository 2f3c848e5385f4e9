"""The tracking layer (render/tracking.py): the MLflow server and its store."""

from __future__ import annotations

from aistack.operator.render import render


def test_mlflow_secret_backend_is_expanded_by_kubelet_not_rendered(make_stack, by_kind_name) -> None:
    manifests = by_kind_name(render(make_stack("production")).manifests)
    c = manifests[("Deployment", "support-copilot-mlflow")]["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][c["args"].index("--backend-store-uri") + 1] == "$(MLFLOW_BACKEND_STORE_URI)"
    assert ("PersistentVolumeClaim", "support-copilot-mlflow-data") not in manifests  # s3 + external DB


def test_mlflow_local_store_gets_a_volume(make_stack, by_kind_name) -> None:
    manifests = by_kind_name(render(make_stack("rag")).manifests)
    c = manifests[("Deployment", "docs-assistant-mlflow")]["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][c["args"].index("--backend-store-uri") + 1].startswith("sqlite:////mlflow/")
    assert manifests[("PersistentVolumeClaim", "docs-assistant-mlflow-data")]["spec"]["resources"] == {
        "requests": {"storage": "10Gi"}}
