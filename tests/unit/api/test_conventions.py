"""Child naming: `<stack>-<component>`, always a valid DNS label for any name the API accepts."""

from __future__ import annotations

import pytest

from aistack.api.conventions import DNS_LABEL_MAX, LONGEST_CHILD_SUFFIX, child_name, service_url
from aistack.api.v1alpha1.stack import MAX_NAME_LENGTH


def test_the_longest_stack_name_with_the_longest_suffix_fits_a_dns_label() -> None:
    longest = "a" * MAX_NAME_LENGTH
    assert child_name(longest, LONGEST_CHILD_SUFFIX.removeprefix("-")) == longest + LONGEST_CHILD_SUFFIX
    assert MAX_NAME_LENGTH + len(LONGEST_CHILD_SUFFIX) <= DNS_LABEL_MAX


def test_a_child_name_past_63_characters_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="exceeds 63 characters"):
        child_name("a" * 60, "gateway")


def test_service_url_is_fully_qualified() -> None:
    assert service_url(name="s-gateway", namespace="ai", port=8080, path="/v1") == \
        "http://s-gateway.ai.svc.cluster.local:8080/v1"
