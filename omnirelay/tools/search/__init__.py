"""Search backends behind one small interface (``SearchBackend``): a local SQLite FTS5 corpus and HTTP adapters
for SearXNG, Tavily and Brave, found by name in one registry (``SEARCH_BACKENDS``).

The registry names each backend's module instead of importing it: a backend's module is loaded the first time a
request uses it (aiohttp for the HTTP ones, sqlite for the corpus), and the interface in ``base`` never imports
the implementations that import it."""

from __future__ import annotations

import importlib

from omnirelay.core.errors import invalid
from omnirelay.tools.search.base import Document, SearchBackend, SearchResult
from omnirelay.tools.settings import SearchBackendConfig

# ``type:`` of a ``search_backends`` entry -> "module:class" of its SearchBackend.
SEARCH_BACKENDS: dict[str, str] = {
    "local": "omnirelay.tools.search.local:LocalCorpus",
    "searxng": "omnirelay.tools.search.http:SearxngBackend",
    "tavily": "omnirelay.tools.search.http:TavilyBackend",
    "brave": "omnirelay.tools.search.http:BraveBackend",
}


def backend_class(kind: str) -> type[SearchBackend]:
    """The class registered for ``kind``; ValueError naming the known ones otherwise."""
    try:
        module_name, class_name = SEARCH_BACKENDS[kind].split(":")
    except KeyError:
        known = ", ".join(SEARCH_BACKENDS)
        raise ValueError(f"unknown search backend type {kind!r} ({known})") from None
    cls: type[SearchBackend] = getattr(importlib.import_module(module_name), class_name)
    return cls


def make_backend(cfg: SearchBackendConfig, data_dir: str | None) -> SearchBackend:
    return backend_class(cfg.type).from_config(cfg, data_dir)


def backend_config(name: str, configured: dict[str, SearchBackendConfig]) -> SearchBackendConfig:
    """The config of the backend a request names (``omnirelay.search``): a configured one, or the local corpus
    at its default place when ``local`` is not configured. An unknown name is the caller's error."""
    cfg = configured.get(name)
    if cfg is None and name == "local":
        cfg = SearchBackendConfig(type="local")
    if cfg is None:
        known = ", ".join(sorted({"local", *configured}))
        raise invalid(f"unknown search backend {name!r} (configured: {known})", param="omnirelay.search")
    return cfg


__all__ = [
    "SEARCH_BACKENDS",
    "Document",
    "SearchBackend",
    "SearchBackendConfig",
    "SearchResult",
    "backend_class",
    "backend_config",
    "make_backend",
]
