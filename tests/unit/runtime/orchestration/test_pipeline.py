"""The prompt the pipeline builds from passages and the spec's template."""

from __future__ import annotations

from aistack.runtime.orchestration.pipeline import NO_CONTEXT, build_prompt, format_context
from aistack.runtime.retrieval.contracts import Passage

P = [Passage(text="alpha " * 50, source="a.md", score=0.9, title="A", chunk_index=3),
     Passage(text="beta " * 50, source="b.md", score=0.8), Passage(text="gamma", source="c.md", score=0.1)]
MSGS = [{"role": "system", "content": "client system"}, {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"}, {"role": "user", "content": "raw question"}]


def test_template_fills_the_last_user_turn_and_system_prompt_goes_first():
    out = build_prompt(messages=MSGS, question="q?", passages=P[:1], system_prompt="spec system",
                       template="CTX {context} Q {question}")
    assert out.messages[0] == {"role": "system", "content": "spec system"}
    assert out.messages[1:4] == MSGS[:3]
    assert out.messages[
        -1]["content"].startswith("CTX [1] (A) alpha") and out.messages[-1]["content"].endswith("Q q?")
    assert out.citations == [{"index": 1, "source": "a.md", "score": 0.9, "title": "A", "chunk_index": 3}]
    assert MSGS[-1]["content"] == "raw question"  # the input is not mutated


def test_context_respects_the_token_budget_but_keeps_the_best_passage():
    text, used = format_context(P, max_context_tokens=80)
    assert [p.source for p in used] == ["a.md"] and len(text) <= 80 * 4
    _, used = format_context(P, max_context_tokens=10_000)
    assert len(used) == 3


def test_empty_retrieval_says_so_and_no_retrieval_skips_context_templates():
    out = build_prompt(messages=MSGS, question="q", passages=[], system_prompt=None, template=None)
    assert NO_CONTEXT in out.messages[-1]["content"] and out.citations == []
    same = build_prompt(messages=MSGS, question="q", passages=None, system_prompt=None, template=None)
    assert same.messages == MSGS
    plain = build_prompt(messages=MSGS, question="q", passages=None, system_prompt=None,
                         template="Q: {question}")
    assert plain.messages[-1]["content"] == "Q: q"
