"""The router built from mounts: exact and subtree matches, 405 detection, and which mount's error format
applies to a path no endpoint matched."""

from __future__ import annotations

import pytest

from omnirelay.core.errors import GatewayError
from omnirelay.web.exchange import Exchange
from omnirelay.web.routes import Endpoint, Mount, Router


async def _chat(request: Exchange) -> None: ...
async def _messages(request: Exchange) -> None: ...
async def _keys(request: Exchange) -> None: ...
async def _one_key(request: Exchange) -> None: ...


def _openai(err: GatewayError) -> bytes:
    return b"openai"


def _anthropic(err: GatewayError) -> bytes:
    return b"anthropic"


def _admin(err: GatewayError) -> bytes:
    return b"admin"


def _router() -> Router:
    return Router(
        [
            Mount("", [Endpoint("POST", p, _chat) for p in ("/v1/chat/completions", "/chat/completions")], _openai),
            Mount("", [Endpoint("POST", p, _messages) for p in ("/v1/messages", "/messages")], _anthropic),
            Mount("/admin/", [Endpoint("GET", "/keys", _keys), Endpoint("GET", "/keys/*", _one_key)], _admin),
        ],
        _openai,
    )


def test_exact_paths_match_their_handler_and_mount_format() -> None:
    router = _router()
    route = router.match("POST", "/messages")
    assert route is not None and route.handler is _messages and route.render_error is _anthropic
    route = router.match("GET", "/admin/keys")  # the mount's prefix is joined to the endpoint path
    assert route is not None and route.handler is _keys and route.render_error is _admin
    assert router.match("GET", "/v1/messages") is None
    assert router.match("POST", "/v1/models") is None


def test_subtree_endpoints_match_every_path_below_them() -> None:
    router = _router()
    for path in ("/admin/keys/k_1", "/admin/keys/k_1/disable"):
        route = router.match("GET", path)
        assert route is not None and route.handler is _one_key
    assert router.match("POST", "/admin/keys/k_1") is None


def test_another_method_on_an_endpoint_path_is_known() -> None:
    router = _router()
    assert router.allows_other_method("/v1/chat/completions")
    assert router.allows_other_method("/admin/keys")
    assert not router.allows_other_method("/v1/nope")


@pytest.mark.parametrize(
    ("path", "render"),
    [
        ("/v1/messages/count_tokens", _anthropic),
        ("/messages/x/y", _anthropic),
        ("/v1/chat/completions/x", _openai),
        ("/admin", _admin),
        ("/admin/nope", _admin),
        ("/v1/nope", _openai),
        ("/", _openai),
        ("/nope", _openai),
    ],
)
def test_unknown_paths_take_the_format_of_the_mount_owning_the_nearest_path_above(path: str, render: object) -> None:
    assert _router().render_error_for(path) is render


def test_an_endpoint_registered_twice_is_refused_at_start() -> None:
    twice = [Endpoint("GET", "/health", _chat), Endpoint("GET", "/health", _keys)]
    with pytest.raises(ValueError, match="GET /health"):
        Router([Mount("", twice, _openai)], _openai)
