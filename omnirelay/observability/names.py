"""OpenTelemetry's ``gen_ai.provider.name`` for each upstream (metrics label and span attribute alike)."""

from __future__ import annotations

from collections.abc import Mapping

from omnirelay.config import Config, UpstreamConfig

# Per provider, and per OpenAI-compatible preset (the semantic conventions' well-known values where they have
# one; the local servers keep their preset's name).
PROVIDER_NAMES = {
    "openai": "openai",
    "xai": "x_ai",
    "deepseek": "deepseek",
    "mistral": "mistral_ai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "local": "omnirelay.local",
    "compound": "omnirelay.compound",
}


def provider_name(upstream: UpstreamConfig) -> str:
    kind = upstream.preset if upstream.provider == "openai" and upstream.preset else upstream.provider
    return PROVIDER_NAMES.get(kind, kind)


class ProviderNames:
    """Upstream name -> provider name, for the configured upstreams and the built-in virtual ones."""

    __slots__ = ("by_upstream",)

    def __init__(self, config: Config) -> None:
        self.by_upstream: Mapping[str, str] = {u.name: provider_name(u) for u in config.upstreams}

    def of(self, upstream: str, provider: str | None) -> str:
        found = self.by_upstream.get(upstream)
        if found is not None:
            return found
        return PROVIDER_NAMES.get(provider or "", provider or "")
