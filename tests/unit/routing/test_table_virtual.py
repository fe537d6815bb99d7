"""Virtual modes are registered with the route table (``register_virtual``), not known to it: a mode routes and
is listed only once registered, over a routable, non-virtual base model."""

from __future__ import annotations

import pytest

from omnirelay.config import UpstreamConfig, parse_config
from omnirelay.core.errors import GatewayError
from omnirelay.routing.table import Route, RouteTable, engine_route

ENGINE = UpstreamConfig(name="engine:deep", provider="openai")


def _table() -> RouteTable:
    return RouteTable(parse_config({"upstreams": [{"name": "u", "provider": "openai", "models": ["m1", "m2"]}]}))


def _deep(public_name: str, base: str) -> Route:
    return engine_route(public_name, ENGINE, base)


def test_an_unregistered_mode_does_not_route_and_is_not_listed() -> None:
    table = _table()
    with pytest.raises(GatewayError) as exc:
        table.resolve("deep:m1")
    assert exc.value.status == 404
    assert [name for name, _ in table.public_models()] == ["m1", "m2"]


def test_a_registered_mode_routes_to_its_resolver_over_a_routable_base() -> None:
    table = _table()
    with pytest.raises(GatewayError):
        table.resolve("deep:m1")  # the miss is memoised: registering must forget it
    table.register_virtual("deep", _deep)
    route = table.resolve("deep:m1")
    assert route.public_name == "deep:m1" and route.retry.max_attempts == 1
    (only,) = route.channels
    assert (only.upstream.name, only.model, only.name) == ("engine:deep", "m1", "engine:deep/m1")
    assert table.split_virtual("deep:m1") == ("deep", "m1") and table.split_virtual("m1") is None
    for unroutable in ("deep:nope", "deep:deep:m1", "deep:"):
        with pytest.raises(GatewayError):
            table.resolve(unroutable)


def test_registered_modes_are_listed_after_every_plain_model() -> None:
    table = _table()
    table.register_virtual("deep", _deep)
    table.register_virtual("aa", _deep)
    names = [name for name, _ in table.public_models()]
    assert names == ["m1", "m2", "aa:m1", "aa:m2", "deep:m1", "deep:m2"]
