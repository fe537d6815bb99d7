"""Provider registry: name -> module. Adding a provider is one module plus one line here.

Modules are imported on first use so a deployment that never configures the local model never imports
llama.cpp.
"""

from __future__ import annotations

import importlib

from omnirelay.providers.base import EngineProvider, HttpProvider

PROVIDER_MODULES: dict[str, str] = {
    "openai": "omnirelay.providers.openai",
    "anthropic": "omnirelay.providers.anthropic",
    "gemini": "omnirelay.providers.gemini",
    "local": "omnirelay.providers.local",
}


def provider_class(name: str) -> type[HttpProvider] | type[EngineProvider]:
    """The provider class a module exports as ``PROVIDER``."""
    try:
        module = importlib.import_module(PROVIDER_MODULES[name])
    except KeyError:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(sorted(PROVIDER_MODULES))}") from None
    cls: type[HttpProvider] | type[EngineProvider] = module.PROVIDER
    return cls
