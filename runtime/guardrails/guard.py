"""One facade over all rails of a config: fast rails first, then the LLM rails.

The gateway asks it four questions (fast input, LLM input, fast output, LLM output) so it can
run the slow input check concurrently with retrieval and the output checks before sending.
"""

from __future__ import annotations

import logging

import httpx

from aistack.api.gateway_config import GatewayConfig
from aistack.api.v1alpha1.guardrails import GuardrailsSpec
from aistack.runtime.guardrails.fast import FastRails, RailDecision
from aistack.runtime.guardrails.llm_rails import LlmRails, RailsEngineError, Side, build_llm_rails

log = logging.getLogger("aistack.guardrails")


class GuardrailsUnavailable(Exception):
    """The LLM rails gave no verdict and the spec does not fail open: do not serve."""


class Guard:
    def __init__(self, *, spec: GuardrailsSpec, llm: LlmRails | None) -> None:
        self.spec = spec
        self.fast_input = FastRails(spec=spec, side="input")
        self.fast_output = FastRails(spec=spec, side="output")
        self.llm = llm
        self.llm_input = llm is not None and "self_check_input" in spec.input
        self.llm_output = llm is not None and "self_check_output" in spec.output
        self.refusal = spec.refusal_message

    @classmethod
    def from_config(cls, config: GatewayConfig, *, http: httpx.AsyncClient) -> Guard | None:
        if config.guardrails is None:
            return None
        return cls(spec=config.guardrails.rails, llm=build_llm_rails(config, http=http))

    async def check_llm(self, *, side: Side, question: str,
                        answer: str | None = None) -> tuple[RailDecision, bool]:
        """(decision, engine_failed). An engine failure blocks with 503 unless `failOpen`."""
        assert self.llm is not None
        try:
            return await self.llm.check(side=side, question=question, answer=answer), False
        except RailsEngineError as err:
            log.error("guardrails engine failed on the %s: %s", side, err)
            if self.spec.fail_open:
                return RailDecision("passed", (answer or "") if side == "output" else question, None), True
            raise GuardrailsUnavailable(str(err)) from err
