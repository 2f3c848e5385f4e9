"""AIStack API, version v1alpha1: the single contract of the operator, the runtime and the CLI."""

from aistack.api.v1alpha1.guardrails import GuardrailsSpec
from aistack.api.v1alpha1.mlops import EvaluationSpec, ObservabilitySpec
from aistack.api.v1alpha1.model import ModelSpec, VllmSpec
from aistack.api.v1alpha1.orchestration import OrchestrationSpec, Tool
from aistack.api.v1alpha1.retrieval import RetrievalSpec
from aistack.api.v1alpha1.stack import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    AIStack,
    AIStackSpec,
    AIStackStatus,
    Condition,
    GatewaySpec,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "AIStack",
    "AIStackSpec",
    "AIStackStatus",
    "Condition",
    "EvaluationSpec",
    "GatewaySpec",
    "GuardrailsSpec",
    "ModelSpec",
    "ObservabilitySpec",
    "OrchestrationSpec",
    "RetrievalSpec",
    "Tool",
    "VllmSpec",
]
