"""Names of the child objects of an AIStack.

Kept in one place so render functions, the status logic and the tests agree; names are
`<stack>-<component>` and always fit the 63-character DNS label limit because the API caps
AIStack names at 40 characters.
"""

from __future__ import annotations

from aistack.api.v1alpha1.stack import MAX_NAME_LENGTH

LONGEST_SUFFIX = "-guardrails-config"
assert MAX_NAME_LENGTH + len(LONGEST_SUFFIX) <= 63


def child_name(stack_name: str, component: str) -> str:
    """`support-copilot`, `model` -> `support-copilot-model`."""
    name = f"{stack_name}-{component}"
    if len(name) > 63:
        raise ValueError(f"child name {name!r} exceeds 63 characters")
    return name
