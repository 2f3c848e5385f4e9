"""The LLM rails (`self_check_*`) behind one interface: NeMo Guardrails in-process (local runs)
or the guardrails sidecar's `/v1/checks` HTTP API (pods). Both run NeMo's `check_async`, so the
behaviour is the same; only the transport differs.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol

import httpx

from aistack.api.gateway_config import GatewayConfig
from aistack.runtime.guardrails.fast import RailDecision

log = logging.getLogger("aistack.guardrails")
Side = Literal["input", "output"]


class RailsEngineError(Exception):
    """The rails engine could not give a verdict (down, misconfigured, or a non-answer)."""


class LlmRails(Protocol):
    async def check(self, *, side: Side, question: str, answer: str | None = None) -> RailDecision: ...

    async def ready(self) -> bool: ...

    async def aclose(self) -> None: ...


def _messages(side: Side, question: str, answer: str | None) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": question}]
    if side == "output":
        messages.append({"role": "assistant", "content": answer or ""})
    return messages


def _decision(side: Side, status: str, content: str | None, rail: str | None, original: str) -> RailDecision:
    if status == "blocked":
        return RailDecision("blocked", original, rail or f"self_check_{side}")
    if status == "passed" or (status == "modified" and content == original):
        return RailDecision("passed", original, None)
    # Self-check rails only ever pass or block. A "modified" text is NeMo's stand-in answer
    # for a failure (e.g. "I'm sorry, an internal error has occurred."): never let it through.
    raise RailsEngineError(f"NeMo Guardrails gave no verdict on the {side} (status {status!r}, "
                           f"content {str(content)[:80]!r}); check its model and embeddings config")


class InProcessRails:
    """NeMo Guardrails' LLMRails in this process."""

    def __init__(self, config: GatewayConfig) -> None:
        from nemoguardrails import LLMRails, RailsConfig

        from aistack.runtime.guardrails.nemo_config import nemo_config_yaml

        self._rails = LLMRails(RailsConfig.from_content(yaml_content=nemo_config_yaml(config)))

    async def check(self, *, side: Side, question: str, answer: str | None = None) -> RailDecision:
        from nemoguardrails.rails.llm.options import RailType

        original = question if side == "input" else (answer or "")
        try:
            result = await self._rails.check_async(_messages(side, question, answer),
                                                   rail_types=[RailType.INPUT if side == "input"
                                                               else RailType.OUTPUT])
        except Exception as err:  # NeMo raises many kinds; all mean "no verdict"
            raise RailsEngineError(
                f"NeMo Guardrails failed on the {side}: {type(err).__name__}: {err}") from err
        return _decision(side, str(getattr(result.status, "value", result.status)), result.content,
                         result.rail, original)

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


class SidecarRails:
    """The guardrails sidecar (`nemoguardrails server`) over loopback HTTP."""

    def __init__(self, *, base_url: str, config_id: str, model: str, http: httpx.AsyncClient,
                 timeout_s: float = 30.0) -> None:
        self._url = base_url.rstrip("/")
        self._config_id = config_id
        self._model = model
        self._http = http
        self._timeout = timeout_s

    async def check(self, *, side: Side, question: str, answer: str | None = None) -> RailDecision:
        original = question if side == "input" else (answer or "")
        body: dict[str, Any] = {"model": self._model, "messages": _messages(side, question, answer),
                                "guardrails": {"config_id": self._config_id, "rail_types": [side]}}
        try:
            resp = await self._http.post(f"{self._url}/v1/checks", json=body, timeout=self._timeout)
        except httpx.HTTPError as err:
            raise RailsEngineError(
                f"the guardrails sidecar at {self._url} is unreachable ({type(err).__name__})") from err
        if resp.status_code != 200:
            raise RailsEngineError(
                f"the guardrails sidecar answered HTTP {resp.status_code}: {resp.text[:200]}")
        data = resp.json()
        return _decision(side, str(data.get("status")), data.get("content"), data.get("rail"), original)

    async def ready(self) -> bool:
        try:
            resp = await self._http.get(f"{self._url}/v1/rails/configs", timeout=2.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200 and any(c.get("id") == self._config_id for c in resp.json())

    async def aclose(self) -> None:
        return None


def build_llm_rails(config: GatewayConfig, *, http: httpx.AsyncClient) -> LlmRails | None:
    """The LLM rails engine the config asks for, or None when no self-check rail is declared."""
    g = config.guardrails
    if g is None or not g.rails.uses_llm:
        return None
    if g.engine == "sidecar":
        if not g.sidecar_url:
            raise ValueError("guardrails.engine is 'sidecar' but guardrails.sidecarUrl is not set")
        return SidecarRails(base_url=g.sidecar_url, config_id=g.config_id, model=config.model.primary.model,
                            http=http)
    return InProcessRails(config)
