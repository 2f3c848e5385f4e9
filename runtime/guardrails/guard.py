"""One facade over all rails of a config: fast rails first, then the LLM rails.

The gateway asks it four questions (fast input, LLM input, fast output, LLM output) so it can
run the slow input check concurrently with retrieval and the output checks before sending.
"""

from __future__ import annotations

import logging

import httpx

from aistack.api.gateway_config import GatewayConfig
from aistack.api.v1alpha1.guardrails import GuardrailsSpec
from aistack.runtime.guardrails.fast import PII_HOLDBACK_CHARS, FastRails, RailDecision
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

    @property
    def holdback_chars(self) -> int:
        """How much of a streamed answer is held back so a rail can still stop or mask it."""
        window = 0
        if "blocked_terms" in self.fast_output.rails:
            window = max(window, self.fast_output.longest_term + 1)
        if "pii_mask" in self.fast_output.rails:
            window = max(window, PII_HOLDBACK_CHARS)
        return window

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


class StreamGuard:
    """Output rails over a stream: holds back a window of characters and checks the text so far.

    With only fast output rails, text is released once it is more than `holdback_chars` behind
    the newest character (a blocked term or a PII match can then never be half-sent). With
    `self_check_output`, the whole answer is held back until the LLM rail has judged it.
    """

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.window = guard.holdback_chars
        self.hold_all = guard.llm_output
        self.raw = ""
        self.sent = 0
        self.decision = RailDecision("passed", "", None)

    def feed(self, delta: str) -> str:
        """Text that may be sent now; sets `decision` when a rail blocks (then send nothing more)."""
        self.raw += delta
        if not self.guard.fast_output:
            return "" if self.hold_all else self._release(self.raw, len(self.raw))
        decision = self.guard.fast_output.check(self.raw)
        if decision.blocked:
            self.decision = decision
            return ""
        if self.hold_all:
            return ""
        return self._release(decision.text, len(decision.text) - self.window)

    def flush(self) -> str:
        """The rest of the text once the upstream is done (fast rails re-run on the whole)."""
        decision = self.guard.fast_output.check(
            self.raw) if self.guard.fast_output else RailDecision("passed", self.raw)
        if decision.blocked:
            self.decision = decision
            return ""
        return self._release(decision.text, len(decision.text))

    def _release(self, text: str, upto: int) -> str:
        if upto <= self.sent:
            return ""
        out = text[self.sent:upto]
        self.sent = upto
        return out
