"""Tags on every AWS resource: they say which stage owns it, and the policy pack reads them."""

from __future__ import annotations

STAGE_TAG = "aistack.dev/stage"
MANAGED_BY_TAG = "aistack.dev/managed-by"


def resource_tags(*, stage: str) -> dict[str, str]:
    """`{"aistack.dev/stage": "prod", "aistack.dev/managed-by": "pulumi"}`."""
    return {STAGE_TAG: stage, MANAGED_BY_TAG: "pulumi"}
