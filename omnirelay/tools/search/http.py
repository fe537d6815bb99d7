"""HTTP search adapters, each speaking its service's documented JSON API:

* SearXNG: ``GET {base}/search?q=...&format=json`` -> ``results[]`` of ``url``/``title``/``content``
  (``publishedDate`` when known). The instance must have the JSON format enabled.
* Tavily: ``POST {base}/search`` with ``{"query", "max_results"}`` and ``Authorization: Bearer <key>`` ->
  ``results[]`` of ``url``/``title``/``content`` (``published_date`` with topic news).
* Brave: ``GET {base}/res/v1/web/search?q=...&count=N`` with ``X-Subscription-Token: <key>`` ->
  ``web.results[]`` of ``url``/``title``/``description`` (``page_age``).
"""

from __future__ import annotations

from typing import Any, Self

import aiohttp
import msgspec

from omnirelay.tools.search.base import SearchBackend, SearchResult, api_key_of
from omnirelay.tools.settings import SearchBackendConfig


class SearchError(Exception):
    pass


class _HttpBackend(SearchBackend):
    default_url = ""  # the service's public endpoint, used when the config gives no ``url``

    @classmethod
    def from_config(cls, cfg: SearchBackendConfig, data_dir: str | None) -> Self:
        return cls(cfg.url or cls.default_url, api_key_of(cfg), cfg.timeout)

    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def _json(self, method: str, url: str, **kw: Any) -> Any:
        async with self.session().request(method, url, **kw) as resp:
            body = await resp.read()
            if resp.status >= 400:
                # The key never goes into the message; the body is summarised.
                raise SearchError(f"{self.name} search failed with status {resp.status}: {body[:200]!r}")
            try:
                return msgspec.json.decode(body)
            except msgspec.DecodeError:
                raise SearchError(f"{self.name} search returned invalid JSON") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


class SearxngBackend(_HttpBackend):
    name = "searxng"
    default_url = "http://127.0.0.1:8888"

    async def search(self, query: str, limit: int = 5) -> list[SearchResult]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = await self._json(
            "GET", self.base_url + "/search", params={"q": query, "format": "json"}, headers=headers
        )
        results = data.get("results") if isinstance(data, dict) else None
        out: list[SearchResult] = []
        for r in results or []:
            if isinstance(r, dict) and _str(r.get("url")):
                out.append(
                    SearchResult(
                        url=r["url"],
                        title=_str(r.get("title")),
                        snippet=_str(r.get("content")),
                        date=_str(r.get("publishedDate")) or None,
                    )
                )
        return out[:limit]


class TavilyBackend(_HttpBackend):
    name = "tavily"
    default_url = "https://api.tavily.com"

    async def search(self, query: str, limit: int = 5) -> list[SearchResult]:
        if not self.api_key:
            raise SearchError("tavily search needs an api_key")
        body = {"query": query, "max_results": limit, "search_depth": "basic"}
        data = await self._json(
            "POST",
            self.base_url + "/search",
            data=msgspec.json.encode(body),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        results = data.get("results") if isinstance(data, dict) else None
        return [
            SearchResult(
                url=r["url"],
                title=_str(r.get("title")),
                snippet=_str(r.get("content")),
                date=_str(r.get("published_date")) or None,
            )
            for r in results or []
            if isinstance(r, dict) and _str(r.get("url"))
        ][:limit]


class BraveBackend(_HttpBackend):
    name = "brave"
    default_url = "https://api.search.brave.com"

    async def search(self, query: str, limit: int = 5) -> list[SearchResult]:
        if not self.api_key:
            raise SearchError("brave search needs an api_key")
        data = await self._json(
            "GET",
            self.base_url + "/res/v1/web/search",
            params={"q": query, "count": str(limit)},
            headers={"Accept": "application/json", "X-Subscription-Token": self.api_key},
        )
        web = data.get("web") if isinstance(data, dict) else None
        results = web.get("results") if isinstance(web, dict) else None
        return [
            SearchResult(
                url=r["url"],
                title=_str(r.get("title")),
                snippet=_str(r.get("description")),
                date=_str(r.get("page_age")) or None,
            )
            for r in results or []
            if isinstance(r, dict) and _str(r.get("url"))
        ][:limit]
