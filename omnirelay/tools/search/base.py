"""The search interface. The backends implement it in their own modules; ``omnirelay.tools.search`` holds the
registry that builds one by name."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Self

import msgspec

from omnirelay.tools.settings import SearchBackendConfig


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

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: SearchBackendConfig, data_dir: str | None) -> Self:
        """The backend a ``search_backends`` entry describes; ``data_dir`` is the gateway's state folder."""

    @abstractmethod
    async def search(self, query: str, limit: int = 5) -> list[SearchResult]: ...

    async def read(self, url: str) -> Document | None:
        """The document behind a result when the backend holds it (the local corpus); None: fetch the URL."""
        return None

    async def aclose(self) -> None:
        """Release connections."""


def api_key_of(cfg: SearchBackendConfig) -> str | None:
    """The configured key: given inline, or read from the named environment variable."""
    return cfg.api_key or (os.environ.get(cfg.api_key_env) if cfg.api_key_env else None)
