"""The search interface and the backend factory."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from omnirelay.compound.options import SearchBackendConfig


class SearchResult(msgspec.Struct, kw_only=True):
    url: str
    title: str = ""
    snippet: str = ""
    date: str | None = None  # publication date when the backend knows it (ISO text)


class Document(msgspec.Struct, kw_only=True):
    """A source as read: its text, for the model to take notes from."""

    url: str
    title: str
    text: str
    date: str | None = None


class SearchBackend(ABC):
    name: str = "search"

    @abstractmethod
    async def search(self, query: str, limit: int = 5) -> list[SearchResult]: ...

    async def read(self, url: str) -> Document | None:
        """The document behind a result when the backend holds it (the local corpus); None: fetch the URL."""
        return None

    async def aclose(self) -> None:
        """Release connections."""


def make_backend(cfg: SearchBackendConfig, data_dir: str | None) -> SearchBackend:
    import os

    key = cfg.api_key or (os.environ.get(cfg.api_key_env) if cfg.api_key_env else None)
    if cfg.type == "local":
        from omnirelay.tools.search.local import LocalCorpus

        path = cfg.path or str(Path(data_dir or ".").expanduser() / "corpus.db")
        return LocalCorpus(path)
    from omnirelay.tools.search import http

    if cfg.type == "searxng":
        return http.SearxngBackend(cfg.url or "http://127.0.0.1:8888", key, cfg.timeout)
    if cfg.type == "tavily":
        return http.TavilyBackend(cfg.url or "https://api.tavily.com", key, cfg.timeout)
    if cfg.type == "brave":
        return http.BraveBackend(cfg.url or "https://api.search.brave.com", key, cfg.timeout)
    raise ValueError(f"unknown search backend type {cfg.type!r} (local, searxng, tavily, brave)")
