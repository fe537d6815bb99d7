"""The session cookie and the CSRF check, without a server."""

from __future__ import annotations

import pytest

from omnirelay.config import ConsoleConfig
from omnirelay.console.session import check_csrf, clear_cookie, session_cookie, set_cookie
from omnirelay.core.errors import GatewayError
from omnirelay.state.accounts import csrf_of


def test_cookie_parsing() -> None:
    assert session_cookie({}) is None
    assert session_cookie({"cookie": "a=1; omnirelay_session=abc; b=2"}) == "abc"
    assert session_cookie({"cookie": "omnirelay_session="}) is None
    assert session_cookie({"cookie": "omnirelay_sessionx=abc"}) is None
    assert session_cookie({"cookie": "omnirelay_session=" + "x" * 500}) is None


def test_cookie_attributes() -> None:
    plain = set_cookie("sid", ConsoleConfig(), {})
    assert plain.startswith("omnirelay_session=sid;") and "HttpOnly" in plain and "SameSite=Strict" in plain
    assert "Path=/console" in plain and "Secure" not in plain and "Max-Age=604800" in plain
    assert "; Secure" in set_cookie("sid", ConsoleConfig(), {"x-forwarded-proto": "HTTPS"})
    assert "; Secure" in set_cookie("sid", ConsoleConfig(secure_cookies=True), {})
    assert "Max-Age=0" in clear_cookie(ConsoleConfig(), {})


def test_csrf() -> None:
    token = csrf_of("session-a")
    assert token != csrf_of("session-b") and len(token) == 64
    check_csrf({"x-csrf-token": token}, "session-a")
    for headers in ({}, {"x-csrf-token": ""}, {"x-csrf-token": csrf_of("session-b")}, {"x-csrf-token": "é"}):
        with pytest.raises(GatewayError) as err:
            check_csrf(headers, "session-a")
        assert err.value.status == 403 and err.value.code == "csrf_failed"
