"""A hosted model's key on a laptop: the manifest's secret variable, else the provider's own.

The manifest names a Secret (`apiKeySecretRef`), which `aistack up` reads from
`AISTACK_SECRET_<NAME>_<KEY>`. People who use a hosted API already export its conventional
variable (`OPENAI_API_KEY`, ...), and serving the offline model while that key sits in the
environment surprises them. So, on this machine only, an unset secret variable falls back to
the variable that the provider's own documentation names for the base URL's host. The cluster
reads Secrets only: the operator never looks here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from aistack.api.gateway_config import GatewayConfig, Upstream

PROVIDER_KEY_ENVS: dict[str, str] = {
    "api.openai.com": "OPENAI_API_KEY",
    "api.groq.com": "GROQ_API_KEY",
    "api.mistral.ai": "MISTRAL_API_KEY",
    "api.together.xyz": "TOGETHER_API_KEY",
    "api.together.ai": "TOGETHER_API_KEY",
    "openrouter.ai": "OPENROUTER_API_KEY",
    "api.deepseek.com": "DEEPSEEK_API_KEY",
    "api.fireworks.ai": "FIREWORKS_API_KEY",
}
"""Host of a provider's OpenAI-compatible base URL -> the key variable its documentation uses."""


@dataclass(frozen=True)
class KeySource:
    """Where an upstream's key comes from on this machine."""

    env: str | None
    """The variable that holds the key; None when none of `tried` is set."""
    tried: tuple[str, ...]
    """The variables looked at, in order: the secret's, then the provider's."""

    @property
    def fallback(self) -> bool:
        """The key came from the provider's variable, not the manifest's secret."""
        return self.env is not None and self.env != self.tried[0]

    def unset(self) -> str:
        """'$A is not set' or 'neither $A nor $B is set'."""
        if len(self.tried) == 1:
            return f"${self.tried[0]} is not set"
        return f"neither ${self.tried[0]} nor ${self.tried[1]} is set"


def key_source(*, secret_env: str, base_url: str, environ: Mapping[str, str],
               provider_envs: Mapping[str, str] = PROVIDER_KEY_ENVS) -> KeySource:
    """The secret's variable when set, else the provider's conventional one for the host of `base_url`."""
    conventional = provider_envs.get((urlsplit(base_url).hostname or "").lower())
    tried = (secret_env,) + ((conventional,) if conventional and conventional != secret_env else ())
    return KeySource(env=next((name for name in tried if environ.get(name)), None), tried=tried)


def with_provider_keys(config: GatewayConfig, *, environ: Mapping[str, str],
                       provider_envs: Mapping[str, str] = PROVIDER_KEY_ENVS) -> GatewayConfig:
    """`config` with each model upstream whose secret variable is unset reading the provider's instead.

    Upstreams with a set secret, no secret, or no known provider are left as they are, so the
    gateway's own message about an unset variable still names the manifest's.
    """
    def local(upstream: Upstream | None) -> Upstream | None:
        if upstream is None or upstream.api_key_env is None:
            return upstream
        source = key_source(secret_env=upstream.api_key_env, base_url=upstream.base_url, environ=environ,
                            provider_envs=provider_envs)
        return upstream.model_copy(update={"api_key_env": source.env}) if source.fallback else upstream

    update: dict[str, object] = {"primary": local(config.model.primary),
                                 "fallback": local(config.model.fallback)}
    canary = config.model.canary
    if canary is not None:  # an API canary: another model at the same endpoint, with the same key
        update["canary"] = canary.model_copy(update={"upstream": local(canary.upstream)})
    model = config.model.model_copy(update=update)
    return config.model_copy(update={"model": model})
