"""``provider:`` in the config is checked against the provider registry, not a list of its own."""

from __future__ import annotations

from typing import Any

import pytest

from omnirelay import providers
from omnirelay.config import ConfigError, parse_config


def _config(provider: str) -> dict[str, Any]:
    return {"upstreams": [{"name": "u1", "provider": provider, "base_url": "http://127.0.0.1:9/v1", "api_key": "k"}]}


def test_an_unknown_provider_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config("nosuch"))
    message = str(caught.value)
    assert "invalid configuration" in message and "'u1'" in message and "unknown provider 'nosuch'" in message
    assert "known: " + ", ".join(sorted(providers.PROVIDER_MODULES)) in message


def test_a_provider_added_to_the_registry_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(providers.PROVIDER_MODULES, "newcomer", "omnirelay.providers.openai")
    (upstream,) = parse_config(_config("newcomer")).upstreams
    assert upstream.provider == "newcomer"


EMBEDDING_ONLY = {"local_embeddings"}  # an embedding model that cannot chat


@pytest.mark.parametrize("name", sorted(providers.PROVIDER_MODULES))
def test_every_registered_provider_is_accepted_and_declares_chat(name: str) -> None:
    (upstream,) = parse_config(_config(name)).upstreams
    assert upstream.provider == name
    expected = "embeddings" if name in EMBEDDING_ONLY else "chat"
    assert expected in providers.provider_class(name).capabilities
