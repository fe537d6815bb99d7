"""Search backends behind one small interface (``SearchBackend``): a local SQLite FTS5 corpus and HTTP adapters
for SearXNG, Tavily and Brave."""

from __future__ import annotations

from omnirelay.tools.search.base import Document, SearchBackend, SearchResult, make_backend

__all__ = ["Document", "SearchBackend", "SearchResult", "make_backend"]
