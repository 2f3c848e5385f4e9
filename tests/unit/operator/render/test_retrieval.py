"""The retrieval layer (render/retrieval.py): the Qdrant StatefulSet, or none for external stores."""

from __future__ import annotations

from aistack.operator.render import render


def test_external_stores_render_no_servers(make_stack, by_kind_name, all_secrets) -> None:
    manifests = by_kind_name(render(make_stack("production", all_secrets)).manifests)
    assert not [k for k in manifests if k[0] == "StatefulSet" or k[1].endswith("-mlflow")]


def test_qdrant_statefulset_keeps_volumes(make_stack, by_kind_name) -> None:
    sts = by_kind_name(render(make_stack("production")).manifests)[("StatefulSet",
                                                                    "support-copilot-vector-store")]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "50Gi"
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
