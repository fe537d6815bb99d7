"""The console's JSON API through the running gateway, on SQLite and on PostgreSQL + Redis: sign-in, sessions
and CSRF, owner checks, keys made on the console used with the openai SDK and charged to the owner's wallet at
the group's multiplier, top-ups, redemption codes, exports, the playground, the admin routes and the pages'
headers."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from omnirelay.state.backends import open_store
from tests.console_support import ADMIN_EMAIL, ADMIN_PASSWORD, API, Console, ConsoleEnv, console_gateway
from tests.mocks.script import ScriptedReply, ScriptedUsage
from tests.mocks.server import MockUpstreams
from tests.polling import wait_until
from tests.state_helpers import ADMIN_KEY, BACKENDS

GPT = "gpt-4.1"  # 2.00 in / 8.00 out per million; the mock answers 12 in, 7 out
GPT_COST = (12 * 2.0 + 7 * 8.0) / 1e6
XSS = "<script>alert('x')</script>"


@pytest.fixture(scope="module", params=BACKENDS)
def env(
    request: pytest.FixtureRequest, mocks: MockUpstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleEnv]:
    workdir = tmp_path_factory.mktemp(f"console-{request.param}")
    with console_gateway(request.param, mocks, workdir, login_max_failures_per_ip=12) as e:
        yield e


def _ask(client: openai.OpenAI, model: str = GPT, **kw: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}], **kw
    )


def _wallet_in_db(env: ConsoleEnv, wallet_id: str) -> tuple[int, int]:
    """(balance, sum of the ledger) straight from the database, in units."""

    async def read() -> tuple[int, int]:
        store = open_store(env.database_url)
        await store.open()
        try:
            wallet = await store.accounts.wallet(wallet_id)
            return wallet.balance_units, await store.accounts.ledger_sum(wallet_id)
        finally:
            await store.close()

    return asyncio.run(read())


def _topup(admin: Console, user_id: str, usd: float) -> float:
    return float(
        admin.ok(admin.post(f"/admin/users/{user_id}/topup", {"amount_usd": usd, "reason": "test"}))["balance_usd"]
    )


# -- sessions ----------------------------------------------------------------------------------------------


def test_sign_in_cookie_me_and_one_message_for_wrong_email_or_password(env: ConsoleEnv) -> None:
    c = env.console()
    r = c.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test below
    body = r.json()
    assert body["user"]["email"] == ADMIN_EMAIL and body["user"]["role"] == "admin"
    me = c.ok(c.get("/me"))
    assert me["role"] == "admin" and me["group"] == "default" and me["multiplier"] == 1.0
    assert me["wallet"] == "user" and me["team"] is None and me["csrf_token"] == body["csrf_token"]
    wrong = env.console().login(ADMIN_EMAIL, "not the password")
    unknown = env.console().login("nobody@example.com", "not the password")
    for r in (wrong, unknown):
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert env.console().get("/me").status_code == 401


def test_secure_cookie_behind_https_proxy(env: ConsoleEnv) -> None:
    r = httpx.post(
        env.gw.url + API + "/login",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        headers={"x-forwarded-proto": "https"},
    )
    assert r.status_code == 200 and "; Secure" in r.headers["set-cookie"]


def test_login_attempts_are_limited_per_email(env: ConsoleEnv) -> None:
    admin = env.admin()
    target, user = env.member(admin)
    for _ in range(5):
        assert env.console().login(user["email"], "wrong-password").status_code == 401
    r = env.console().login(user["email"], "wrong-password")
    assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_login_attempts"
    assert int(r.headers["retry-after"]) > 0
    # Even the right password waits now; another email from the same address is not locked out.
    assert env.console().login(user["email"], "member-password-1").status_code == 429
    assert env.console().login(ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 200
    assert target.get("/me").status_code == 200  # an existing session is not affected


def test_no_session_fixation_and_logout_kills_the_session(env: ConsoleEnv) -> None:
    c = env.console()
    host = httpx.URL(env.gw.url).host
    c.http.cookies.set("omnirelay_session", "planted-by-an-attacker", domain=host, path="/console")
    c.ok(c.login(ADMIN_EMAIL, ADMIN_PASSWORD))
    first = c.session_id()
    assert first and first != "planted-by-an-attacker"
    c.ok(c.login(ADMIN_EMAIL, ADMIN_PASSWORD))  # signing in again while signed in: a new id, the old one dead
    second = c.session_id()
    assert second and second != first
    stale = httpx.get(env.gw.url + API + "/me", cookies={"omnirelay_session": first})
    assert stale.status_code == 401
    assert c.post("/logout").status_code == 204
    after = httpx.get(env.gw.url + API + "/me", cookies={"omnirelay_session": second})
    assert after.status_code == 401 and after.json()["error"]["code"] == "not_signed_in"


def test_csrf_token_is_required_on_every_unsafe_request(env: ConsoleEnv) -> None:
    c = env.admin()
    none = c.http.post(API + "/keys", json={"name": "x"})
    wrong = c.http.post(API + "/keys", json={"name": "x"}, headers={"x-csrf-token": "0" * 64})
    for r in (none, wrong):
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    assert c.http.post(API + "/logout").status_code == 403
    assert c.post("/keys", {"name": "with-token"}).status_code == 201


# -- owners ------------------------------------------------------------------------------------------------


def test_a_member_sees_only_their_own_objects_and_no_admin_route(env: ConsoleEnv) -> None:
    admin = env.admin()
    alice, _ = env.member(admin)
    bob, bob_user = env.member(admin)
    _topup(admin, bob_user["id"], 1.0)
    bob_key = bob.ok(bob.post("/keys", {"name": "bob's"}), 201)
    request_id = _ask(bob.openai(bob_key["secret"])).headers["x-request-id"]
    assert bob.ok(bob.get(f"/requests/{request_id}"))["key_id"] == bob_key["id"]
    entry = bob.ok(bob.get("/wallet"))["ledger"][0]
    for r in (
        alice.get(f"/keys/{bob_key['id']}"),
        alice.patch(f"/keys/{bob_key['id']}", {"name": "mine now"}),
        alice.delete(f"/keys/{bob_key['id']}"),
        alice.get(f"/requests/{request_id}"),
    ):
        assert r.status_code == 404, r.text
    assert alice.ok(alice.get("/requests", key_id=bob_key["id"]))["data"] == []
    assert alice.ok(alice.get("/wallet"))["ledger"] == [] and (entry["kind"], entry["ref"]) == ("usage", request_id)
    for r in (
        alice.get("/admin/users"),
        alice.get("/admin/ledger", user_id=bob_user["id"]),
        alice.post(f"/admin/users/{bob_user['id']}/topup", {"amount_usd": 5, "reason": "me"}),
        alice.post("/admin/codes", {"count": 1, "amount_usd": 1}),
        alice.get("/admin/channels"),
        alice.get("/usage/series", all=1),
    ):
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required", r.text
    assert bob.ok(bob.get(f"/keys/{bob_key['id']}"))["name"] == "bob's"  # untouched


# -- keys, charging, wallets --------------------------------------------------------------------------------


def test_console_key_with_the_openai_sdk_is_logged_and_charged_to_the_wallet(
    env: ConsoleEnv, mocks: MockUpstreams
) -> None:
    admin = env.admin()
    member, user = env.member(admin)
    assert _topup(admin, user["id"], 1.0) == pytest.approx(1.0)
    key = member.ok(member.post("/keys", {"name": "sdk", "models": ["gpt-*"], "rpm": 100}), 201)
    assert key["secret"].startswith("sk-or-") and key["models"] == ["gpt-*"] and key["credit_usd"] is None
    assert "secret" not in member.ok(member.get("/keys"))["data"][0]
    client = member.openai(key["secret"])
    costs = []
    raw = _ask(client)
    assert raw.parse().choices[0].message.content
    costs.append(float(raw.headers["x-omnirelay-cost"]))
    stream = client.chat.completions.create(
        model=GPT, messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None
    mocks.push("openai", ScriptedReply(usage=ScriptedUsage(input=1000, output=500)))
    costs.append(float(_ask(client).headers["x-omnirelay-cost"]))
    assert costs[0] == pytest.approx(GPT_COST, abs=1e-15)
    assert costs[1] == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1e6, abs=1e-15)
    rows = member.ok(member.get("/requests"))["data"]
    assert len(rows) == 3 and {r["key_id"] for r in rows} == {key["id"]} and rows[0]["key_name"] == "sdk"
    assert [r["stream"] for r in rows] == [False, True, False]  # newest first
    assert rows[0]["cost_usd"] == pytest.approx(costs[1], abs=1e-15)
    assert rows[2]["cost_usd"] == pytest.approx(costs[0], abs=1e-15)
    assert rows[0]["channel"] == f"mock-openai/{GPT}" and rows[0]["status"] == 200 and rows[0]["attempts"] == 1
    total = sum(r["cost_usd"] for r in rows)
    wallet = member.ok(member.get("/wallet"))
    usage_entries = [e for e in wallet["ledger"] if e["kind"] == "usage"]
    assert sorted(e["ref"] for e in usage_entries) == sorted(r["request_id"] for r in rows)
    assert sum(e["amount_usd"] for e in usage_entries) == pytest.approx(-total, abs=1e-12)
    assert wallet["balance_usd"] == pytest.approx(1.0 - total, abs=1e-12)
    balance, ledger_sum = _wallet_in_db(env, f"user:{user['id']}")
    assert balance == ledger_sum == round((1.0 - total) * 1e10)
    assert member.ok(member.get(f"/keys/{key['id']}"))["spent_usd"] == pytest.approx(total, abs=1e-12)


def test_group_multiplier_scales_prices_costs_and_charges(env: ConsoleEnv) -> None:
    admin = env.admin()
    admin.ok(admin.post("/admin/groups", {"name": f"gold-{env.kind}", "multiplier": 2.5}), 201)
    assert admin.post("/admin/groups", {"name": f"gold-{env.kind}", "multiplier": 3}).status_code == 409
    member, user = env.member(admin, group=f"gold-{env.kind}")
    _topup(admin, user["id"], 1.0)
    me = member.ok(member.get("/me"))
    assert me["group"] == f"gold-{env.kind}" and me["multiplier"] == 2.5
    models = member.ok(member.get("/models"))
    assert models["multiplier"] == 2.5
    gpt = next(m for m in models["data"] if m["id"] == GPT)
    assert gpt["kind"] == "chat" and gpt["input_usd_per_mtok"] == 5.0 and gpt["output_usd_per_mtok"] == 20.0
    assert gpt["batch_input_usd_per_mtok"] == 2.5
    assert any(m["kind"] == "compound" and m["input_usd_per_mtok"] is None for m in models["data"])
    key = member.ok(member.post("/keys", {"name": "gold"}), 201)
    raw = _ask(member.openai(key["secret"]))
    assert float(raw.headers["x-omnirelay-cost"]) == pytest.approx(GPT_COST * 2.5, abs=1e-15)
    row = member.ok(member.get(f"/requests/{raw.headers['x-request-id']}"))
    assert row["cost_usd"] == pytest.approx(GPT_COST * 2.5, abs=1e-15)
    assert member.ok(member.get("/wallet"))["balance_usd"] == pytest.approx(1.0 - GPT_COST * 2.5, abs=1e-12)


def test_a_compound_request_is_charged_once_at_the_multiplier(env: ConsoleEnv, mocks: MockUpstreams) -> None:
    admin = env.admin()
    admin.ok(admin.post("/admin/groups", {"name": f"double-{env.kind}", "multiplier": 2}), 201)
    member, user = env.member(admin, group=f"double-{env.kind}")
    _topup(admin, user["id"], 1.0)
    key = member.ok(member.post("/keys", {"name": "thinker"}), 201)
    mocks.push(
        "openai",
        ScriptedReply(text="Six sevens: 6*7 = 42.", usage=ScriptedUsage(input=20, output=10)),
        ScriptedReply(text="42", usage=ScriptedUsage(input=30, output=2)),
    )
    raw = _ask(member.openai(key["secret"]), model="think:gpt-4.1")
    expected = 2 * (50 * 2e-6 + 12 * 8e-6)  # both passes, at twice the list price
    assert float(raw.headers["x-omnirelay-cost"]) == pytest.approx(expected, abs=1e-15)
    row = member.ok(member.get(f"/requests/{raw.headers['x-request-id']}"))
    assert row["cost_usd"] == pytest.approx(expected, abs=1e-15) and row["model_requested"] == "think:gpt-4.1"
    wallet = member.ok(member.get("/wallet"))
    assert [(e["kind"], e["ref"]) for e in wallet["ledger"]] == [
        ("usage", raw.headers["x-request-id"]),
        ("topup", None),
    ]
    assert wallet["balance_usd"] == pytest.approx(1.0 - expected, abs=1e-12)
    balance, ledger_sum = _wallet_in_db(env, f"user:{user['id']}")
    assert balance == ledger_sum == round((1.0 - expected) * 1e10)


def test_an_empty_wallet_refuses_like_an_empty_key_and_a_key_cap_still_applies(env: ConsoleEnv) -> None:
    admin = env.admin()
    member, user = env.member(admin)
    key = member.ok(member.post("/keys", {"name": "broke"}), 201)
    with pytest.raises(openai.RateLimitError) as err:
        _ask(member.openai(key["secret"]))
    assert err.value.code == "insufficient_quota"
    _topup(admin, user["id"], 1.0)
    assert _ask(member.openai(key["secret"])).status_code == 200  # the top-up counts at once
    capped = member.ok(member.post("/keys", {"name": "capped", "credit_usd": 0.0}), 201)
    with pytest.raises(openai.RateLimitError):
        _ask(member.openai(capped["secret"]))
    disabled = member.ok(member.patch(f"/keys/{key['id']}", {"disabled": True}))
    assert disabled["disabled"] is True
    wait_until(lambda: _status(member, key["secret"]) == 401)
    assert member.delete(f"/keys/{capped['id']}").status_code == 204
    assert member.get(f"/keys/{capped['id']}").status_code == 404


def _status(member: Console, secret: str) -> int:
    try:
        return int(_ask(member.openai(secret)).status_code)
    except openai.APIStatusError as exc:
        return exc.status_code


def test_team_members_draw_from_the_team_wallet(env: ConsoleEnv) -> None:
    admin = env.admin()
    team = admin.ok(admin.post("/admin/teams", {"name": f"team-{env.kind}-{time.time()}"}), 201)
    t = admin.ok(admin.post(f"/admin/teams/{team['id']}/topup", {"amount_usd": 2.0, "reason": "budget"}))
    assert t["balance_usd"] == pytest.approx(2.0)
    member, user = env.member(admin, team_id=team["id"])
    me = member.ok(member.get("/me"))
    assert me["wallet"] == "team" and me["team"] == {"id": team["id"], "name": team["name"]}
    key = member.ok(member.post("/keys", {"name": "team key"}), 201)
    _ask(member.openai(key["secret"]))
    assert member.ok(member.get("/wallet"))["balance_usd"] == pytest.approx(2.0 - GPT_COST, abs=1e-12)
    ledger = admin.ok(admin.get("/admin/ledger", team_id=team["id"]))
    assert [e["kind"] for e in ledger["ledger"]] == ["usage", "topup"]
    balance, ledger_sum = _wallet_in_db(env, f"team:{team['id']}")
    assert balance == ledger_sum
    assert admin.ok(admin.get("/admin/ledger", user_id=user["id"]))["ledger"] == []  # their own wallet: untouched


# -- redemption codes -----------------------------------------------------------------------------------------


def test_codes_batch_csv_redeem_once_and_errors(env: ConsoleEnv) -> None:
    admin = env.admin()
    batch = admin.ok(admin.post("/admin/codes", {"count": 3, "amount_usd": 0.5, "note": "promo"}), 201)
    assert len(batch["codes"]) == 3 and all(c["code"].startswith("rc-") for c in batch["codes"])
    listed = admin.ok(admin.get("/admin/codes", batch_id=batch["batch_id"]))["data"]
    assert {c["id"] for c in listed} == {c["id"] for c in batch["codes"]}
    assert all("code" not in c and c["redeemed_by"] is None and c["note"] == "promo" for c in listed)
    r = admin.post("/admin/codes", {"count": 2, "amount_usd": 1.25}, params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.text)))
    assert table[0] == ["id", "code", "amount_usd", "expires_at"] and len(table) == 3 and table[1][2] == "1.25"
    member, user = env.member(admin)
    out = member.ok(member.post("/redeem", {"code": batch["codes"][0]["code"]}))
    assert out == {"amount_usd": 0.5, "balance_usd": 0.5}
    again = member.post("/redeem", {"code": batch["codes"][0]["code"]})
    assert again.status_code == 409 and again.json()["error"]["code"] == "code_redeemed"
    forged = batch["codes"][1]["code"][:-4] + "AAAA"
    for code in ("rc-nosuchcode0-xyz", forged, "garbage"):
        r = member.post("/redeem", {"code": code})
        assert r.status_code == 404 and r.json()["error"]["code"] == "code_not_found"
    expired = admin.ok(admin.post("/admin/codes", {"count": 1, "amount_usd": 9, "expires_at": time.time() - 1}), 201)
    r = member.post("/redeem", {"code": expired["codes"][0]["code"]})
    assert r.status_code == 410 and r.json()["error"]["code"] == "code_expired"
    ledger = member.ok(member.get("/wallet"))
    assert [(e["kind"], e["amount_usd"]) for e in ledger["ledger"]] == [("redeem", 0.5)]
    redeemed = admin.ok(admin.get("/admin/codes", batch_id=batch["batch_id"]))["data"]
    assert [c["redeemed_by"] for c in redeemed if c["id"] == batch["codes"][0]["id"]] == [user["id"]]


def test_a_code_redeemed_concurrently_is_credited_once(env: ConsoleEnv) -> None:
    admin = env.admin()
    code = admin.ok(admin.post("/admin/codes", {"count": 1, "amount_usd": 0.75}), 201)["codes"][0]["code"]
    members = [env.member(admin) for _ in range(6)]
    with ThreadPoolExecutor(len(members)) as pool:
        statuses = list(pool.map(lambda m: m[0].post("/redeem", {"code": code}).status_code, members))
    assert sorted(statuses) == [200] + [409] * (len(members) - 1)
    balances = [m[0].ok(m[0].get("/wallet"))["balance_usd"] for m in members]
    assert sorted(balances) == [0.0] * (len(members) - 1) + [0.75]


# -- exports, data as data, pages ------------------------------------------------------------------------------


def test_request_log_filters_paging_csv_and_charts(env: ConsoleEnv) -> None:
    admin = env.admin()
    member, user = env.member(admin)
    _topup(admin, user["id"], 1.0)
    key = member.ok(member.post("/keys", {"name": "log"}), 201)
    client = member.openai(key["secret"])
    ids = [_ask(client).headers["x-request-id"] for _ in range(5)]
    page1 = member.ok(member.get("/requests", limit=2))
    page2 = member.ok(member.get("/requests", limit=2, cursor=page1["next_cursor"]))
    page3 = member.ok(member.get("/requests", limit=2, cursor=page2["next_cursor"]))
    seen = [r["request_id"] for r in page1["data"] + page2["data"] + page3["data"]]
    assert seen == ids[::-1] and page3["next_cursor"] is None
    assert member.ok(member.get("/requests", status="error"))["data"] == []
    assert len(member.ok(member.get("/requests", model=GPT, channel="mock-openai"))["data"]) == 5
    r = member.get("/requests.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert len(table) == 5 and float(table[0]["cost_usd"]) == pytest.approx(GPT_COST, abs=1e-15)
    assert list(table[0]) == list(page1["data"][0])
    series = member.ok(member.get("/usage/series", bucket="hour", by="model"))
    assert series["bucket"] == "hour" and len(series["series"]) == 1
    s = series["series"][0]
    assert s["name"] == GPT and sum(s["requests"]) == 5 and sum(s["tokens"]) == 5 * 19
    assert sum(s["spend_usd"]) == pytest.approx(5 * GPT_COST, abs=1e-12) and len(s["requests"]) == len(
        series["buckets"]
    )
    by_key = member.ok(member.get("/usage/series", bucket="day", by="key"))
    assert [x["name"] for x in by_key["series"]] == ["log"]
    latency = member.ok(member.get("/usage/latency"))["data"]
    assert latency[0]["name"] == GPT and latency[0]["requests"] == 5 and latency[0]["latency_ms"]["p50"] > 0
    everyone = admin.ok(admin.get("/requests", all=1, key_id=key["id"]))
    assert len(everyone["data"]) == 5


def test_script_in_key_and_model_names_comes_back_as_plain_json_strings(env: ConsoleEnv) -> None:
    admin = env.admin()
    member, user = env.member(admin)
    _topup(admin, user["id"], 1.0)
    key = member.ok(member.post("/keys", {"name": XSS}), 201)
    with pytest.raises(openai.NotFoundError):
        _ask(member.openai(key["secret"]), model=XSS)
    r = member.get("/requests")
    assert r.headers["content-type"].startswith("application/json")
    row = r.json()["data"][0]
    assert row["key_name"] == XSS and row["model_requested"] == XSS and row["status"] == 404
    assert member.ok(member.get("/keys"))["data"][0]["name"] == XSS
    assert "&lt;" not in r.text
    with pytest.raises(openai.NotFoundError):
        _ask(member.openai(key["secret"]), model="=HYPERLINK(1)")
    table = list(csv.DictReader(io.StringIO(member.get("/requests.csv").text)))
    assert [row["model_requested"] for row in table] == ["'=HYPERLINK(1)", XSS]  # not a formula in a spreadsheet


def test_pages_are_served_with_strict_headers(env: ConsoleEnv) -> None:
    for path in ("/console", "/console/", "/console/tokens", "/console/admin/users"):
        r = httpx.get(env.gw.url + path)
        assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8", path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cache-control"] == "no-cache"
    for path in ("/console/missing.js", "/console/api/nothing-here", "/console/%2e%2e/README.md"):
        r = httpx.get(env.gw.url + path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url", path


def test_admin_key_api_shares_the_account_routes(env: ConsoleEnv) -> None:
    http = httpx.Client(base_url=env.gw.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    users = http.get("/admin/users")
    assert users.status_code == 200 and ADMIN_EMAIL in [u["email"] for u in users.json()["data"]]
    created = http.post("/admin/users", json={"email": f"api-{time.time()}@example.com", "password": "pw-123456789"})
    assert created.status_code == 201 and created.json()["role"] == "member"
    top = http.post(f"/admin/users/{created.json()['id']}/topup", json={"amount_usd": 3, "reason": "api"})
    assert top.status_code == 200 and top.json()["balance_usd"] == 3.0
    entry = http.get("/admin/ledger", params={"user_id": created.json()["id"]}).json()["ledger"][0]
    assert entry["actor"] == "admin-key" and entry["reason"] == "api"
    assert httpx.get(env.gw.url + "/admin/users").status_code == 401
    short = http.post("/admin/users", json={"email": "x@example.com", "password": "short"})
    assert short.status_code == 400 and short.json()["error"]["param"] == "password"


def test_playground_runs_through_the_relay_on_the_users_own_key(env: ConsoleEnv) -> None:
    admin = env.admin()
    member, user = env.member(admin)
    _topup(admin, user["id"], 1.0)
    body = {"model": GPT, "messages": [{"role": "user", "content": "hi"}]}
    answer = member.ok(member.post("/playground/chat", body))
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"]
    streamed = member.post("/playground/chat", {**body, "stream": True})
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert member.http.post(API + "/playground/chat", json=body).status_code == 403  # CSRF applies
    keys = member.ok(member.get("/keys"))["data"]
    assert [k["name"] for k in keys] == ["console playground"]
    rows = member.ok(member.get("/requests"))["data"]
    assert len(rows) == 2 and {r["key_name"] for r in rows} == {"console playground"}
    assert member.ok(member.get("/wallet"))["balance_usd"] == pytest.approx(1.0 - 2 * GPT_COST, abs=1e-12)
    broke, _ = env.member(admin)
    refused = broke.post("/playground/chat", body)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"


def test_admin_channels_and_channel_test(env: ConsoleEnv) -> None:
    admin = env.admin()
    data = admin.ok(admin.get("/admin/channels"))["data"]
    by_name = {c["upstream"]: c for c in data}
    assert by_name["mock-openai"]["provider"] == "openai" and by_name["mock-openai"]["breaker"] in (
        "closed",
        "open",
        "half_open",
    )
    tested = admin.ok(admin.post("/admin/channels/mock-openai/test", {"model": GPT}))
    assert tested["ok"] is True and tested["status"] == 200 and tested["latency_ms"] > 0 and tested["error"] is None
    assert admin.post("/admin/channels/no-such-upstream/test", {}).status_code == 404


def test_users_admin_patch_disable_and_delete(env: ConsoleEnv) -> None:
    admin = env.admin()
    member, user = env.member(admin)
    patched = admin.ok(admin.patch(f"/admin/users/{user['id']}", {"role": "admin"}))
    assert patched["role"] == "admin"
    assert member.get("/admin/users").status_code == 200  # the role is read on every request
    admin.ok(admin.patch(f"/admin/users/{user['id']}", {"disabled": True}))
    assert member.get("/me").status_code == 401  # disabling ends their sessions
    assert admin.delete(f"/admin/users/{user['id']}").status_code == 204
    assert admin.patch(f"/admin/users/{user['id']}", {"role": "member"}).status_code == 404
    assert admin.post("/admin/users", {"email": ADMIN_EMAIL, "password": "another-password"}).status_code == 409


def test_login_attempts_are_limited_per_client_address(env: ConsoleEnv) -> None:
    """Last in the module: it locks this test client's address out for the rest of the window."""
    for i in range(12):
        r = env.console().login(f"spray-{i}@example.com", "guess")
        assert r.status_code in (401, 429)
    r = env.console().login(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert r.status_code == 429
