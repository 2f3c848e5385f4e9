"""How GPU nodes are marked, so that the operator's vLLM pods land on them and nothing else does.

GPU node groups carry the label `aistack.dev/gpu-type=<type>` (what `spec.model.vllm.gpu.type`
selects) and the taint `nvidia.com/gpu=present:NoSchedule` (what vLLM pods tolerate).
"""

from __future__ import annotations

from aistack.api.conventions import GPU_TAINT_KEY, GPU_TYPE_LABEL

GPU_TAINT_VALUE = "present"


def gpu_node_labels(gpu_type: str) -> dict[str, str]:
    """Kubernetes node labels of a GPU node group of `gpu_type` (e.g. `nvidia-l4`)."""
    return {GPU_TYPE_LABEL: gpu_type, "aistack.dev/accelerator": "nvidia"}


def gpu_node_taint() -> dict[str, str]:
    """The taint every GPU node carries, in Kubernetes form."""
    return {"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": "NoSchedule"}
