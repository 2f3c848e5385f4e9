"""Names shared by the operator, the runtime and the platform: labels, conditions, ports.

They are contracts between packages that must not import each other, so they live here.
"""

from __future__ import annotations

from typing import Final

# Labels on every child object (the recommended app.kubernetes.io set).
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
PART_OF: Final = "aistack"
MANAGED_BY: Final = "aistack-operator"
# The operator's kopf peering object (ClusterKopfPeering, or KopfPeering per watched namespace)
# and its leader-election Lease (in the operator's namespace): every install names them so.
PEERING_NAME: Final = "aistack"
LEASE_NAME: Final = "aistack-operator"

# Node label carried by GPU nodes (set by the platform's GPU node groups), selected by vLLM pods.
GPU_TYPE_LABEL: Final = "aistack.dev/gpu-type"
GPU_RESOURCE: Final = "nvidia.com/gpu"
GPU_TAINT_KEY: Final = "nvidia.com/gpu"

# Pod-template annotation: a change of rendered config rolls the pods.
CONFIG_HASH_ANNOTATION: Final = "aistack.dev/config-hash"

# Components (value of LABEL_COMPONENT) and the layer conditions they feed.
COMPONENT_MODEL: Final = "model"
COMPONENT_MODEL_CANARY: Final = "model-canary"
COMPONENT_VECTOR_STORE: Final = "vector-store"
COMPONENT_GATEWAY: Final = "gateway"
COMPONENT_TRACKING: Final = "tracking"
COMPONENT_INGESTION: Final = "ingestion"
COMPONENT_EVALUATION: Final = "evaluation"
COMPONENT_CANARY_EVALUATION: Final = "canary-evaluation"
COMPONENT_COLLECTION: Final = "collection"

# Children of an AIStack are named `<stack>-<component>` (`child_name`); the longest suffix
# plus the API's cap on AIStack names fits a DNS label (a test keeps it so).
LONGEST_CHILD_SUFFIX: Final = "-eval-canary-0123456789"  # the canary's evaluation Job, hash included
DNS_LABEL_MAX: Final = 63

CONDITION_READY: Final = "Ready"
CONDITION_MODEL: Final = "ModelReady"
CONDITION_RETRIEVAL: Final = "RetrievalReady"
CONDITION_GUARDRAILS: Final = "GuardrailsReady"
CONDITION_TRACKING: Final = "TrackingReady"
CONDITION_GATEWAY: Final = "GatewayReady"
LAYER_CONDITIONS: Final = (
    CONDITION_MODEL,
    CONDITION_RETRIEVAL,
    CONDITION_GUARDRAILS,
    CONDITION_TRACKING,
    CONDITION_GATEWAY,
)

# Ports.
VLLM_PORT: Final = 8000
GATEWAY_PORT: Final = 8080
GUARDRAILS_PORT: Final = 8001
QDRANT_HTTP_PORT: Final = 6333
QDRANT_GRPC_PORT: Final = 6334
MLFLOW_PORT: Final = 5000

# Where the gateway finds its config in a pod (ConfigMap mount) and the env var naming it.
GATEWAY_CONFIG_ENV: Final = "AISTACK_GATEWAY_CONFIG"
GATEWAY_CONFIG_PATH: Final = "/etc/aistack/gateway/config.yaml"

# Images built by this repo; tagged with the package version unless overridden.
IMAGE_REGISTRY: Final = "ghcr.io/aistack-dev"
RUNTIME_IMAGE_NAME: Final = "runtime"
OPERATOR_IMAGE_NAME: Final = "operator"
# Per-install override of the runtime image (env of the operator Deployment); a stack's own
# `spec.gateway.image` wins over it.
RUNTIME_IMAGE_ENV: Final = "AISTACK_RUNTIME_IMAGE"
# The non-root user (and group) the images run as; pods set it as runAsUser/fsGroup.
IMAGE_UID: Final = 10001

# MLflow evaluation runs: how `aistack eval` logs a run and `aistack promote` finds it.
# A run belongs to the experiment of the stack (`observability.experiment`, else
# `aistack/<namespace>/<name>`), carries these tags, and logs the metrics named in
# `aistack.api.v1alpha1.mlops.EVAL_METRICS`.
RUN_TAG_KIND: Final = "aistack.run_kind"  # value: RUN_KIND_EVALUATION
RUN_KIND_EVALUATION: Final = "evaluation"
RUN_TAG_CONFIG_HASH: Final = "aistack.config_hash"
RUN_TAG_STAGE: Final = "aistack.stage"
RUN_TAG_STACK: Final = "aistack.stack"  # "<namespace>/<name>"
RUN_TAG_MODEL: Final = "aistack.model"
RUN_TAG_OFFLINE_MODEL: Final = "aistack.offline_model"  # "true" when `aistack up`'s offline model answered
RUN_TAG_MODEL_VERSION: Final = "aistack.model_version"  # "stable" | "canary": the version pinned
RUN_KIND_CANARY_EVALUATION: Final = "canary-evaluation"
"""The run kind of an evaluation of a canary (`aistack eval --model-version canary`), and of both
runs of a comparison (`aistack eval --compare-stable`): never a promotion's evidence, which looks
for `RUN_KIND_EVALUATION` runs only."""
RUN_TAG_COMPARED_WITH: Final = "aistack.compared_with"  # on a compared canary run: the stable run id
RUN_TAG_VERDICT: Final = "aistack.verdict"  # "passed" | "failed" against the spec's thresholds


def experiment_name(*, namespace: str, name: str, configured: str | None = None) -> str:
    """The MLflow experiment of a stack: the configured one, else `aistack/<namespace>/<name>`."""
    return configured or f"aistack/{namespace}/{name}"


def child_name(stack_name: str, component: str) -> str:
    """`support-copilot`, `model` -> `support-copilot-model`: how the operator names a stack's
    children, and how anything outside it (the Pulumi install, tests) finds them."""
    name = f"{stack_name}-{component}"
    if len(name) > DNS_LABEL_MAX:
        raise ValueError(f"child name {name!r} exceeds {DNS_LABEL_MAX} characters")
    return name


def service_url(*, name: str, namespace: str, port: int, path: str = "") -> str:
    """In-cluster URL of a Service (fully qualified, so it works across namespaces)."""
    return f"http://{name}.{namespace}.svc.cluster.local:{port}{path}"
