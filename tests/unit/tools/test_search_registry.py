"""tools.search: one registry builds every search backend from its config, with each service's default URL,
the key from the config or its environment variable, and a clear error for an unknown type or name."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from omnirelay.core.errors import GatewayError
from omnirelay.tools.search import SEARCH_BACKENDS, backend_class, backend_config, make_backend
from omnirelay.tools.search.http import BraveBackend, SearxngBackend, TavilyBackend
from omnirelay.tools.search.local import LocalCorpus
from omnirelay.tools.settings import SearchBackendConfig


def test_every_registered_type_names_a_backend_class_of_that_name() -> None:
    for kind in SEARCH_BACKENDS:
        assert backend_class(kind).name == kind


def test_http_backends_get_their_service_default_url_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RC_TEST_BRAVE_KEY", "brave-secret")
    searx = make_backend(SearchBackendConfig(type="searxng"), None)
    tavily = make_backend(SearchBackendConfig(type="tavily", api_key="tvly", timeout=3.0), None)
    brave = make_backend(SearchBackendConfig(type="brave", api_key_env="RC_TEST_BRAVE_KEY"), None)
    assert isinstance(searx, SearxngBackend) and searx.base_url == "http://127.0.0.1:8888" and searx.api_key is None
    assert isinstance(tavily, TavilyBackend) and tavily.base_url == "https://api.tavily.com"
    assert tavily.api_key == "tvly" and tavily.timeout.total == 3.0
    assert isinstance(brave, BraveBackend) and brave.base_url == "https://api.search.brave.com"
    assert brave.api_key == "brave-secret"
    custom = make_backend(SearchBackendConfig(type="searxng", url="http://search.internal/"), None)
    assert isinstance(custom, SearxngBackend) and custom.base_url == "http://search.internal"


def test_the_local_corpus_lives_in_the_data_dir_unless_a_path_is_given(tmp_path: Path) -> None:
    default = make_backend(SearchBackendConfig(type="local"), str(tmp_path))
    given = make_backend(SearchBackendConfig(type="local", path=str(tmp_path / "other.db")), str(tmp_path))
    assert isinstance(default, LocalCorpus) and default.path == str(tmp_path / "corpus.db")
    assert isinstance(given, LocalCorpus) and given.path == str(tmp_path / "other.db")
    for backend in (default, given):
        asyncio.run(backend.aclose())


def test_an_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown search backend type 'bing' \(local, searxng, tavily, brave\)"):
        make_backend(SearchBackendConfig(type="bing"), None)


def test_a_request_names_a_configured_backend_or_the_default_local_one() -> None:
    configured = {"web": SearchBackendConfig(type="searxng")}
    assert backend_config("web", configured) is configured["web"]
    assert backend_config("local", configured) == SearchBackendConfig(type="local")
    with pytest.raises(GatewayError) as info:
        backend_config("nope", configured)
    assert info.value.param == "omnirelay.search" and "configured: local, web" in str(info.value)
