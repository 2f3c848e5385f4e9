"""The offline model's chat template, written into its prepared weights folder (`chat_template.jinja`,
the file vLLM reads), so that the offline model can call the agent's tools.

SmolLM2-135M-Instruct's own template renders only `role` and `content`: a request's `tools`, an
assistant turn's `tool_calls` and a `tool` message's result vanish, so the model never learns that
tools exist. This template renders a conversation without tools exactly as SmolLM2's does (byte for
byte: the model's answers do not change), and with tools it uses the Hermes format that vLLM's
`hermes` tool-call parser reads (Qwen2.5 and Hermes models use it): the tools as JSON in the system
turn, calls as `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, results as
`<tool_response>` in a user turn. The offline engine therefore always runs the `hermes` parser.

A 135M model follows the format only from examples: with three earlier calls in the conversation it
calls the tool for the next question of the same form (measured; greedy), not zero-shot.
"""

from __future__ import annotations

TOOL_CALL_PARSER = "hermes"

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
"""SmolLM2-135M-Instruct's own template (as the GGUF carries it), kept to test the one below against."""

CHAT_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n\n{% endif %}"
    "You can call functions. The functions are listed in <tools></tools>:\n<tools>\n"
    "{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}</tools>\n"
    "To call a function, answer with a JSON object with its name and arguments inside "
    "<tool_call></tool_call> tags, for example:\n"
    '<tool_call>\n{"name": "function_name", "arguments": {"argument": "value"}}\n</tool_call><|im_end|>\n'
    "{% endif %}"
    "{%- for message in messages %}"
    "{%- if loop.first and messages[0]['role'] != 'system' and not tools %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- if message['role'] == 'system' and tools %}"
    "{%- elif message['role'] == 'assistant' and message['tool_calls'] %}"
    "{{ '<|im_start|>assistant\n' }}{% if message['content'] %}{{ message['content'] + '\n' }}{% endif %}"
    "{%- for call in message['tool_calls'] %}"
    "{%- set arguments = call['function']['arguments'] %}"
    "{{ '<tool_call>\n{\"name\": ' }}{{ call['function']['name'] | tojson }}{{ ', \"arguments\": ' }}"
    "{{ arguments if arguments is string else (arguments | tojson) }}{{ '}\n</tool_call>' }}"
    "{%- endfor %}{{ '<|im_end|>\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{{ '<|im_start|>user\n<tool_response>\n' + message['content'] + '\n</tool_response><|im_end|>\n' }}"
    "{%- else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
