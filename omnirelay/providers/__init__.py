"""Provider registry: name -> module. Adding a provider is one module plus one line here.

Modules are imported on first use so a deployment that never configures the local model never imports
llama.cpp (and a worker holds only the provider modules its config names).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from omnirelay.providers.base import EngineProvider, HttpProvider

Provider = HttpProvider | EngineProvider

PROVIDER_MODULES: dict[str, str] = {
    "openai": "omnirelay.providers.openai",
    "openai_responses": "omnirelay.providers.openai_responses",
    "anthropic": "omnirelay.providers.anthropic",
    "gemini": "omnirelay.providers.gemini",
    "local": "omnirelay.providers.local",
    "local_embeddings": "omnirelay.providers.local_embeddings",
}


def provider_class(name: str) -> type[HttpProvider] | type[EngineProvider]:
    """The provider class a module exports as ``PROVIDER``."""
    try:
        module = importlib.import_module(PROVIDER_MODULES[name])
    except KeyError:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(sorted(PROVIDER_MODULES))}") from None
    cls: type[HttpProvider] | type[EngineProvider] = module.PROVIDER
    return cls


class ProviderMap(dict[str, Provider]):
    """Upstream name -> provider instance. Some providers are registered as factories and built on their first
    lookup (``providers[name]`` or ``.get``): the compound engines, whose modules (and the server-side tools they
    import) most deployments never need in memory. ``values()`` holds only what has been built, which is what
    shutdown must close."""

    def __init__(self) -> None:
        super().__init__()
        self.factories: dict[str, Callable[[], Provider]] = {}

    def add_lazy(self, name: str, factory: Callable[[], Provider]) -> None:
        self.pop(name, None)
        self.factories[name] = factory

    def __missing__(self, name: str) -> Provider:
        factory = self.factories.get(name)
        if factory is None:
            raise KeyError(name)
        provider = self[name] = factory()
        del self.factories[name]
        return provider

    def get(self, name: str, default: Provider | None = None) -> Provider | None:  # type: ignore[override]
        try:
            return self[name]
        except KeyError:
            return default
