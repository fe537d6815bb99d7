"""The session cookie and the CSRF check, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from omnirelay.config import ConsoleConfig
from omnirelay.console.session import check_csrf, clear_cookie, client_address, session_cookie, set_cookie
from omnirelay.core.errors import GatewayError
from omnirelay.state.accounts import csrf_of
from omnirelay.web.exchange import BodyClock, BodyTimeouts, Exchange


def test_cookie_parsing() -> None:
    assert session_cookie({}) is None
    assert session_cookie({"cookie": "a=1; omnirelay_session=abc; b=2"}) == "abc"
    assert session_cookie({"cookie": "omnirelay_session="}) is None
    assert session_cookie({"cookie": "omnirelay_sessionx=abc"}) is None
    assert session_cookie({"cookie": "omnirelay_session=" + "x" * 500}) is None


class _Request(Exchange):
    """Only what the cookie helpers read: headers and the scheme."""

    def __init__(self, headers: dict[str, str], scheme: str = "http") -> None:
        super().__init__("POST", "/console/api/login", "", headers, BodyTimeouts(1, 1))
        self._scheme_value = scheme

    def scheme(self) -> str:
        return self._scheme_value

    async def _read_body(self, limit: int, clock: BodyClock) -> bytes:
        raise NotImplementedError

    async def respond(self, status: int, body: bytes, content_type: str = "", headers: Any = None) -> None:
        raise NotImplementedError

    async def open_stream(self, headers: dict[str, str]) -> None:
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    async def close_stream(self) -> None:
        raise NotImplementedError

    async def disconnected(self) -> None:
        raise NotImplementedError


def test_cookie_attributes() -> None:
    plain = set_cookie("sid", ConsoleConfig(), _Request({}))
    assert plain.startswith("omnirelay_session=sid;") and "HttpOnly" in plain and "SameSite=Strict" in plain
    assert "Path=/console" in plain and "Secure" not in plain and "Max-Age=604800" in plain
    assert "; Secure" in set_cookie("sid", ConsoleConfig(), _Request({"x-forwarded-proto": "HTTPS"}))
    assert "; Secure" in set_cookie("sid", ConsoleConfig(), _Request({}, scheme="https"))
    assert "; Secure" in set_cookie("sid", ConsoleConfig(secure_cookies=True), _Request({}))
    assert "Max-Age=0" in clear_cookie(ConsoleConfig(), _Request({}))


def test_client_address_for_throttling() -> None:
    class Peer(_Request):
        def peer(self) -> str:
            return "10.0.0.1"

    forwarded = {"x-forwarded-for": "1.1.1.1, 203.0.113.7"}
    assert client_address(Peer(forwarded), ConsoleConfig()) == "10.0.0.1"  # the header is not trusted by default
    trusted = ConsoleConfig(client_ip_header="X-Forwarded-For")
    assert client_address(Peer(forwarded), trusted) == "203.0.113.7"  # the entry the proxy added
    assert client_address(Peer({}), trusted) == "10.0.0.1"


def test_csrf() -> None:
    token = csrf_of("session-a")
    assert token != csrf_of("session-b") and len(token) == 64
    check_csrf({"x-csrf-token": token}, "session-a")
    for headers in ({}, {"x-csrf-token": ""}, {"x-csrf-token": csrf_of("session-b")}, {"x-csrf-token": "é"}):
        with pytest.raises(GatewayError) as err:
            check_csrf(headers, "session-a")
        assert err.value.status == 403 and err.value.code == "csrf_failed"
