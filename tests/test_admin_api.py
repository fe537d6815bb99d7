"""The admin API is one mount under /admin behind one admin-auth check: every admin route answers a missing or
wrong key, and a gateway with no admin key at all, the same way (status, OpenAI error shape, message)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.gateway import Gateway, mock_config
from tests.mocks.server import MockUpstreams

ADMIN_KEY = "adm-one-check-secret"
ADMIN_ROUTES = [
    ("GET", "/admin/keys"),
    ("POST", "/admin/keys"),
    ("GET", "/admin/keys/k_missing"),
    ("DELETE", "/admin/keys/k_missing"),
    ("GET", "/admin/usage"),
    ("GET", "/admin/usage/summary"),
    ("GET", "/admin/usage/rejected"),
    ("GET", "/admin/channels"),
    ("GET", "/admin/debug/tasks"),
]


@pytest.fixture(scope="module")
def guarded(mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    cfg = mock_config(mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))
    cfg["state"] = {"admin_key": ADMIN_KEY}
    gw = Gateway(cfg, tmp_path_factory.mktemp("admin-guarded")).start()
    yield gw
    gw.stop()


def _errors(url: str, headers: dict[str, str]) -> list[tuple[int, dict[str, object]]]:
    out = []
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        for method, path in ADMIN_ROUTES:
            r = http.request(method, path, json={"name": "x"} if method == "POST" else None)
            out.append((r.status_code, r.json()["error"]))
    return out


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer adm-wrong"}, {"authorization": "Basic eA=="}])
def test_every_admin_route_refuses_a_missing_or_wrong_key_alike(guarded: Gateway, headers: dict[str, str]) -> None:
    errors = _errors(guarded.url, headers)
    assert {status for status, _ in errors} == {401}
    assert {(e["type"], e["code"], e["message"]) for _, e in errors} == {
        ("authentication_error", "invalid_api_key", "Incorrect admin key provided.")
    }
    assert ADMIN_KEY not in str(errors)


def test_every_admin_route_is_403_alike_without_an_admin_key(gateway: Gateway) -> None:
    errors = _errors(gateway.url, {"authorization": f"Bearer {ADMIN_KEY}"})
    assert {status for status, _ in errors} == {403}
    (message,) = {e["message"] for _, e in errors}
    assert "admin API is disabled" in str(message) and "OMNIRELAY_ADMIN_KEY" in str(message)
    assert {e["type"] for _, e in errors} == {"permission_error"}


def test_the_admin_key_opens_every_admin_route(guarded: Gateway) -> None:
    with httpx.Client(base_url=guarded.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as http:
        assert http.get("/admin/keys").status_code == 200
        assert http.get("/admin/usage/summary").status_code == 200
        assert http.get("/admin/channels").json()["object"] == "list"
        assert http.get("/admin/debug/tasks").json()["tasks"] >= 1
        assert http.get("/admin/keys/k_missing").status_code == 404
