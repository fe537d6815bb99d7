"""The admin API refuses values no store can hold, on SQLite and on PostgreSQL: 400 in the OpenAI error shape
naming the field, never a 500, and nothing stored. (Before: credit 1e12 overflowed the 64-bit credit column,
rpm 2**63 and, on PostgreSQL, tpm 2**31 their INTEGER columns, ``limit=10**23`` the SQL LIMIT.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.gateway import Gateway
from tests.mocks.server import MockUpstreams
from tests.state_helpers import BACKENDS, Admin, backend, start_gateway, state_config


@pytest.fixture(scope="module", params=BACKENDS)
def admin(
    request: pytest.FixtureRequest, mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Admin]:
    workdir = tmp_path_factory.mktemp(f"admin-{request.param}")
    with backend(request.param, workdir) as b:
        gw: Gateway = start_gateway(
            state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini"))), workdir, b
        )
        try:
            yield Admin(gw.url)
        finally:
            gw.stop()


KEY_FIELD_CASES: list[tuple[str, Any]] = [
    ("credit", 1e12),
    ("credit", 10**12),
    ("credit", 1e300),
    ("credit", -1),
    ("credit", "10"),
    ("credit", True),
    ("rpm", 2**63),
    ("rpm", 2**31),
    ("rpm", -5),
    ("rpm", 0),
    ("rpm", 1.5),
    ("rpm", "60"),
    ("tpm", 2**31),
    ("tpm", 2**63),
    ("tpm", -1),
    ("tpm", [1]),
    ("expires_at", 1e300),
    ("expires_at", -1),
    ("expires_at", "1e400"),
    ("expires_at", {"at": 1}),
    ("name", "bad\x00name"),
    ("name", "n" * 1000),
    ("name", 7),
    ("models", ["gpt-\x00*"]),
    ("models", 5),
]


def _assert_400(r: Any, field: str) -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == field
    assert field in error["message"]


@pytest.mark.parametrize(("field", "value"), KEY_FIELD_CASES)
def test_create_key_out_of_range_is_400(admin: Admin, field: str, value: Any) -> None:
    before = len(admin.http.get("/admin/keys").json()["data"])
    body = {"name": "range-test", field: value} if field != "name" else {field: value}
    _assert_400(admin.http.post("/admin/keys", json=body), field)
    assert len(admin.http.get("/admin/keys").json()["data"]) == before  # nothing stored


@pytest.mark.parametrize(("field", "value"), KEY_FIELD_CASES)
def test_update_key_out_of_range_is_400(admin: Admin, field: str, value: Any) -> None:
    key_id, _ = admin.create_key(credit=5, rpm=60, tpm=1000)
    _assert_400(admin.http.patch(f"/admin/keys/{key_id}", json={field: value}), field)
    key = admin.key(key_id)  # unchanged, and still readable
    assert (key["credit"], key["rpm"], key["tpm"]) == (5.0, 60, 1000)


def test_largest_accepted_values_are_stored(admin: Admin) -> None:
    key_id, _ = admin.create_key(credit=100_000_000, rpm=2**31 - 1, tpm=2**31 - 1, expires_at=253402300799)
    key = admin.key(key_id)
    assert (key["credit"], key["rpm"], key["tpm"]) == (100_000_000.0, 2**31 - 1, 2**31 - 1)


@pytest.mark.parametrize("path", ["/admin/usage", "/admin/usage/summary", "/admin/usage/rejected"])
@pytest.mark.parametrize("limit", [str(10**23), "-1", "0", "abc", "1.5", "²", "1e3"])
def test_usage_limit_out_of_range_is_400(admin: Admin, path: str, limit: str) -> None:
    _assert_400(admin.http.get(path, params={"limit": limit}), "limit")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("since", "1e400"),
        ("until", "-1e400"),
        ("since", "nan"),
        ("since", "99999999999999999999d"),
        ("key", "a\x00b"),
        ("model", "gpt\x00"),
    ],
)
def test_usage_filters_out_of_range_are_400(admin: Admin, field: str, value: str) -> None:
    for path in ("/admin/usage", "/admin/usage/summary"):
        _assert_400(admin.http.get(path, params={field: value}), field)


def test_key_id_with_nul_is_404_not_500(admin: Admin) -> None:
    r = admin.http.get("/admin/keys/ab%00cd")
    assert r.status_code == 404, r.text


def test_usage_limit_in_range_works(admin: Admin) -> None:
    r = admin.http.get("/admin/usage", params={"limit": "1000000000"})
    assert r.status_code == 200, r.text
