"""The client address and scheme each front end reports (the console throttles sign-ins per address)."""

from __future__ import annotations

from collections.abc import MutableMapping
from types import SimpleNamespace
from typing import Any

from omnirelay.server.asgi import AsgiExchange
from omnirelay.server.rsgi import RsgiExchange
from omnirelay.web.exchange import BodyTimeouts


def _rsgi(client: str, scheme: str = "http") -> RsgiExchange:
    scope = SimpleNamespace(method="GET", path="/", query_string="", headers={}, client=client, scheme=scheme)
    return RsgiExchange(scope, proto=None, body_timeouts=BodyTimeouts(1, 1))


def test_rsgi_peer_and_scheme() -> None:
    assert _rsgi("127.0.0.1:5555").peer() == "127.0.0.1"
    assert _rsgi("[::1]:5555").peer() == "::1"
    assert _rsgi("").peer() == ""
    assert _rsgi("1.2.3.4:1", "https").scheme() == "https"


def test_asgi_peer_and_scheme() -> None:
    async def receive() -> MutableMapping[str, Any]:
        return {}

    async def send(message: MutableMapping[str, Any]) -> None:
        return None

    scope = {"method": "GET", "path": "/", "headers": [], "client": ("10.0.0.2", 4000), "scheme": "https"}
    ex = AsgiExchange(scope, receive, send, BodyTimeouts(1, 1))
    assert ex.peer() == "10.0.0.2" and ex.scheme() == "https"
    bare = AsgiExchange({"method": "GET", "path": "/", "headers": []}, receive, send, BodyTimeouts(1, 1))
    assert bare.peer() == "" and bare.scheme() == "http"
