"""``models:`` keys ending in ``*``: every well-formed name they prefix, after the exact keys, longest first."""

from __future__ import annotations

from typing import Any

import pytest

from omnirelay.config import parse_config
from omnirelay.core.errors import GatewayError
from omnirelay.routing.table import RouteTable


def _table() -> RouteTable:
    raw: dict[str, Any] = {
        "upstreams": [
            {"name": "ds", "provider": "openai", "models": ["deepseek-*"]},
            {"name": "ant", "provider": "anthropic", "models": ["claude-*"]},
        ],
        "models": {
            "claude-*": {"upstream": "ds", "model": "deepseek-chat"},
            "claude-opus-*": {"upstream": "ds", "model": "deepseek-reasoner"},
            "claude-sonnet-4-5": {"upstream": "ant"},
            "plain": {"upstream": "ds", "model": "deepseek-chat"},
        },
    }
    return RouteTable(parse_config(raw))


def _target(table: RouteTable, model: str) -> tuple[str, str, str]:
    route = table.resolve(model)
    (channel,) = route.channels
    return route.public_name, channel.upstream.name, channel.model


def test_longest_pattern_then_shorter_and_exact_keys_first() -> None:
    table = _table()
    assert _target(table, "claude-opus-5-5") == ("claude-opus-5-5", "ds", "deepseek-reasoner")
    assert _target(table, "claude-haiku-9") == ("claude-haiku-9", "ds", "deepseek-chat")
    assert _target(table, "claude-sonnet-4-5") == ("claude-sonnet-4-5", "ant", "claude-sonnet-4-5")
    # A pattern in models: wins over an upstream's own pattern for the same names.
    assert _target(table, "claude-3-haiku-20240307")[1] == "ds"


def test_patterns_take_only_well_formed_names_and_are_not_listed() -> None:
    table = _table()
    with pytest.raises(GatewayError):
        table.resolve("claude-x ")
    with pytest.raises(GatewayError):
        table.resolve("claude-*")  # the key itself is not a model (the * is not a name character)
    listed = [name for name, _owner in table.public_models()]
    assert "claude-*" not in listed and "claude-opus-*" not in listed and "plain" in listed
