"""The route table: config inheritance and validation, routes' deadlines, well-formed model names."""

from __future__ import annotations

from typing import Any

import pytest

from omnirelay.config import ConfigError, RetryConfig, Timeouts, UpstreamConfig, parse_config
from omnirelay.routing.table import Channel, Route, RouteTable, well_formed


def test_config_inherits_and_validates() -> None:
    raw: dict[str, Any] = {
        "routing": {"retry": {"max_attempts": 4, "backoff_cap": 0.5}, "breaker": {"cooldown": 5}},
        "upstreams": [
            {"name": "u1", "provider": "openai", "timeouts": {"connect": 2, "first_byte": 30}, "max_concurrency": 8},
            {"name": "u2", "provider": "openai"},
        ],
        "models": {
            "m": {
                "channels": [
                    {"upstream": "u1", "weight": 3, "timeouts": {"first_byte": 5}, "max_concurrency": 2},
                    {"upstream": "u2", "model": "other", "priority": 1},
                ],
                "retry": {"max_attempts": 2},
                "fallbacks": ["n"],
            },
            "n": {"upstream": "u2", "retry": {"deadline": 9}},
        },
    }
    cfg = parse_config(raw)
    m = cfg.models["m"]
    assert m.retry is not None and (m.retry.max_attempts, m.retry.backoff_cap) == (2, 0.5)
    assert m.channels[0].timeouts is not None
    assert (m.channels[0].timeouts.connect, m.channels[0].timeouts.first_byte) == (2.0, 5.0)
    assert cfg.models["n"].retry is not None and cfg.models["n"].retry.deadline == 9
    table = RouteTable(cfg)
    route = table.resolve("m")
    first, second = route.channels
    assert first.name == "u1/m" and first.effective_timeouts.first_byte == 5.0
    assert [s.cap for s in first.slots] == [2, 8] and second.slots == ()
    assert route.order()[-1] is second and route.retry.max_attempts == 2
    assert table.resolve("u2/anything").retry.max_attempts == 4
    assert table.resolve("n").channels[0].breaker is table.board.get("u2/n")
    for bad in (
        {"routing": {"retry": {"max_attempts": 0}}},
        {"routing": {"breaker": {"failure_rate": 1.5}}},
        {"upstreams": [{"name": "u", "provider": "openai"}], "models": {"x": {"upstream": "u", "weight": -1}}},
    ):
        with pytest.raises(ConfigError):
            parse_config(bad)


def _route(retry: RetryConfig, *totals: float) -> Route:
    channels = tuple(
        Channel(
            upstream=UpstreamConfig(name=f"u{i}", provider="openai", timeouts=Timeouts(total=total)),
            model="m",
        )
        for i, total in enumerate(totals)
    )
    return Route(public_name="m", channels=channels, retry=retry)


def test_default_deadline_is_the_longest_channel_total() -> None:
    assert _route(RetryConfig(), 30.0, 90.0).deadline == 90.0
    assert _route(RetryConfig(), 600.0).deadline == 600.0  # the defaults: 10 min, not 3 x 600 s
    assert _route(RetryConfig(deadline=5.0), 600.0).deadline == 5.0


@pytest.mark.parametrize(
    "name", ["gpt-4o-mini", "gpt-4o-2024-08-06", "llama3.2:3b", "openai/gpt-4.1", "claude-3-7-sonnet@20250219", "a"]
)
def test_well_formed_names(name: str) -> None:
    assert well_formed(name)


@pytest.mark.parametrize(
    "name",
    ["gpt-4o-mini\0", "gpt-4o-mini ", " gpt-4o-mini", "gpt-4o-mini.", "gpt-4o-mini:", "gpt-4o-mini:x:y", "gpt\t4o", ""],
)
def test_malformed_names(name: str) -> None:
    assert not well_formed(name)
