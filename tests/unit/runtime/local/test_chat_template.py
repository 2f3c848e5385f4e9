"""The offline model's chat template: SmolLM2's own rendering where there are no tools, the Hermes
tool format where there are, rendered by transformers as vLLM renders it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from aistack.runtime.local.chat_template import CHAT_TEMPLATE, SMOLLM2_TEMPLATE

TOOLS = [{"type": "function", "function": {"name": "order_status", "description": "an order's status",
                                           "parameters": {"type": "object",
                                                          "properties": {"order_id": {"type": "string"}}}}}]


def render(template: str, messages: list[dict[str, Any]], **kw: Any) -> str:
    text = render_jinja_template([messages], chat_template=template, **kw)
    return text[0][0] if isinstance(text, tuple) else text[0]


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Where is <b>?"}],
])
@pytest.mark.parametrize("generation", [True, False])
def test_without_tools_it_renders_exactly_as_smollm2s_own(messages: list[dict[str, Any]],
                                                          generation: bool) -> None:
    ours = render(CHAT_TEMPLATE, messages, add_generation_prompt=generation)
    assert ours == render(SMOLLM2_TEMPLATE, messages, add_generation_prompt=generation)
    assert "<tools>" not in ours


def test_with_tools_a_call_and_its_result_are_rendered_in_the_hermes_format() -> None:
    messages = [
        {"role": "system", "content": "You track orders."},
        {"role": "user", "content": "Status of AB12CD34?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "order_status", "arguments": {"order_id": "AB12CD34"}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"status": "shipped"}'},
        {"role": "user", "content": "And <QQ11WW22>?"},
    ]
    text = render(CHAT_TEMPLATE, messages, tools=TOOLS, add_generation_prompt=True)
    system, _, rest = text.partition("<|im_end|>\n")
    assert system.startswith("<|im_start|>system\nYou track orders.\n\n")  # the one system turn
    listed = system.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    assert json.loads(listed) == TOOLS[0]
    assert rest.count("<|im_start|>system") == 0
    call = rest.split("<tool_call>\n", 1)[1].split("\n</tool_call>", 1)[0]
    assert json.loads(call) == {"name": "order_status", "arguments": {"order_id": "AB12CD34"}}
    assert '<|im_start|>user\n<tool_response>\n{"status": "shipped"}\n</tool_response><|im_end|>\n' in rest
    assert rest.endswith("<|im_start|>user\nAnd <QQ11WW22>?<|im_end|>\n<|im_start|>assistant\n")
    assert "&lt;" not in text and "&#34;" not in text  # nothing HTML-escaped


def test_arguments_given_as_a_json_string_are_rendered_as_they_are() -> None:
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Looking.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "order_status",
                                                      "arguments": '{"order_id": "X"}'}}]}]
    text = render(CHAT_TEMPLATE, messages, tools=TOOLS)
    assert ('<|im_start|>assistant\nLooking.\n<tool_call>\n{"name": "order_status", "arguments": '
            '{"order_id": "X"}}\n</tool_call><|im_end|>\n') in text
