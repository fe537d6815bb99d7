"""Accounts below the HTTP API, on real SQLite files and on PostgreSQL: every wallet's balance equals its ledger's
sum after mixed traffic (top-ups, adjustments, codes, usage batches replayed as after a crash), a code redeemed
from several connections at once is credited once, sessions are stored hashed and expire, the first admin comes
from the environment, ``omnirelay users`` works, and a database from before accounts keeps its keys working."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from typer.testing import CliRunner

from omnirelay.console.bootstrap import bootstrap_admin
from omnirelay.core.errors import GatewayError
from omnirelay.state.accounts import AccountStore
from omnirelay.state.backends import open_store
from omnirelay.state.keys import hash_secret, new_key, to_units
from omnirelay.state.passwords import verify_password
from omnirelay.state.store import Store, UsageRow
from omnirelay.state.users_cli import users_app
from tests.mocks.server import MockUpstreams
from tests.state_helpers import BACKENDS, PG_BASE, backend, drop_schema, start_gateway, state_config

on_session_loop = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    tag = "a" + uuid.uuid4().hex[:12]
    if request.param == "postgres":
        yield f"{PG_BASE}?schema=omni_{tag}"

        await drop_schema(tag)
    else:
        yield f"sqlite:///{tmp_path}/accounts.db"


@pytest.fixture()
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


def _row(request_id: str, key_id: str, cost_units: int) -> UsageRow:
    return UsageRow(
        request_id, time.time(), key_id, "openai", "gpt-4.1", "mock", "openai", "gpt-4.1", False,
        10, 5, 0, 0, 0, cost_units, 1.0, None, 200, None, 1,
    )  # fmt: skip


async def _assert_balanced(accounts: AccountStore, wallet_id: str) -> int:
    wallet = await accounts.wallet(wallet_id)
    assert wallet.balance_units == await accounts.ledger_sum(wallet_id)
    return wallet.balance_units


@on_session_loop
async def test_balance_equals_the_ledger_after_mixed_traffic(store: Store) -> None:
    a = store.accounts
    team = await a.create_team("core")
    solo = await a.create_user("solo@example.com", "h", "member")
    member = await a.create_user("member@example.com", "h", "member", team_id=team.id)
    solo_key, _ = new_key("solo", owner_user_id=solo.id)
    team_key, _ = new_key("team", owner_user_id=member.id)
    own_key, _ = new_key("unowned", credit=1.0)  # a key of its own: charged as before, no wallet
    for k in (solo_key, team_key, own_key):
        await store.insert_key(k)
    await a.add_entry(solo.wallet_id, to_units(5), "topup", "start", "test")
    await a.add_entry(f"team:{team.id}", to_units(3), "topup", "start", "test")
    await a.add_entry(solo.wallet_id, -to_units(1), "adjust", "refund reversal", "test")
    _batch, codes = await a.create_codes(2, to_units(0.25), None, None, "test")
    await a.redeem(codes[0][1], solo)
    await a.redeem(codes[1][1], member)  # into the team's wallet
    rows = [_row(f"r{i}", (solo_key, team_key, own_key)[i % 3].id, 1_000_000 + i) for i in range(90)]
    assert await store.write_usage(rows[:50]) == 50
    assert await store.write_usage(rows[25:]) == 40  # the overlap is a replay: inserted and charged once
    assert await store.write_usage(rows) == 0
    solo_spent = sum(r.cost_units for r in rows if r.key_id == solo_key.id)
    team_spent = sum(r.cost_units for r in rows if r.key_id == team_key.id)
    assert await _assert_balanced(a, solo.wallet_id) == to_units(5 - 1 + 0.25) - solo_spent
    assert await _assert_balanced(a, f"team:{team.id}") == to_units(3 + 0.25) - team_spent
    assert member.wallet_id == f"team:{team.id}"
    assert (await a.wallet(f"user:{member.id}")).balance_units == 0
    usage = [e for e in await a.ledger(solo.wallet_id, 1000) if e.kind == "usage"]
    assert len(usage) == 30 and {e.ref for e in usage} == {r.request_id for r in rows if r.key_id == solo_key.id}
    own = await store.get_key(own_key.id)
    assert own is not None and own.spent_units == sum(r.cost_units for r in rows if r.key_id == own_key.id)


@on_session_loop
async def test_concurrent_redeems_from_separate_connections_credit_once(store_url: str, store: Store) -> None:
    users = [await store.accounts.create_user(f"u{i}@example.com", "h", "member") for i in range(8)]
    _batch, [(_id, code)] = await store.accounts.create_codes(1, to_units(2), None, None, "test")
    others = [open_store(store_url) for _ in users]
    await asyncio.gather(*(s.open() for s in others))
    try:
        results = await asyncio.gather(
            *(s.accounts.redeem(code, u) for s, u in zip(others, users, strict=True)), return_exceptions=True
        )
    finally:
        await asyncio.gather(*(s.close() for s in others))
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, GatewayError)]
    assert len(won) == 1 and won[0][0] == to_units(2)
    assert len(lost) == 7 and {e.status for e in lost} == {409}
    balances = [await _assert_balanced(store.accounts, u.wallet_id) for u in users]
    assert sorted(balances) == [0] * 7 + [to_units(2)]


@on_session_loop
async def test_sessions_are_stored_hashed_and_expire(store: Store) -> None:
    a = store.accounts
    user = await a.create_user("s@example.com", "h", "member")
    sid = await a.create_session(user.id)
    rows = await a.db.fetch("SELECT id_hash, csrf_hash FROM console_sessions")
    assert rows and all(sid not in (r[0], r[1]) for r in rows)
    assert rows[0][0] == hashlib.sha256(sid.encode()).hexdigest()
    found = await a.session_user(sid)
    assert found is not None and found.id == user.id
    assert await a.session_user(sid + "x") is None
    old = await a.create_session(user.id, ttl_s=-1)
    assert await a.session_user(old) is None
    await a.delete_session(sid)
    assert await a.session_user(sid) is None
    await a.update_user(user.id, {"disabled": True})
    again = await a.create_session(user.id)
    assert await a.session_user(again) is None  # a disabled user has no live session


@on_session_loop
async def test_first_admin_from_the_environment_only_while_nobody_exists(store: Store) -> None:
    env = {"OMNIRELAY_ADMIN_EMAIL": "Boss@Example.com", "OMNIRELAY_ADMIN_PASSWORD": "boss-password-1"}
    assert await bootstrap_admin(store.accounts, {}) is False
    assert await bootstrap_admin(store.accounts, env) is True
    found = await store.accounts.user_by_email("boss@example.com")
    assert found is not None and found[0].role == "admin" and verify_password("boss-password-1", found[1])
    assert found[1].startswith("$argon2id$")
    assert await bootstrap_admin(store.accounts, {**env, "OMNIRELAY_ADMIN_PASSWORD": "changed-password"}) is False
    again = await store.accounts.user_by_email("boss@example.com")
    assert again is not None and verify_password("boss-password-1", again[1])


def test_users_cli_add_topup_and_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNIRELAY_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("OMNIRELAY_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    added = runner.invoke(
        users_app, ["add", "Ops@Example.com", "--role", "admin", "--password-stdin"], input="pw-ops-12345\n"
    )
    assert added.exit_code == 0, added.output
    assert "created admin ops@example.com" in added.output
    assert runner.invoke(users_app, ["add", "x@example.com", "--password-stdin"], input="short\n").exit_code == 2
    assert (
        runner.invoke(
            users_app, ["add", "x@example.com", "--role", "root", "--password-stdin"], input="x" * 9
        ).exit_code
        == 2
    )
    topped = runner.invoke(users_app, ["topup", "ops@example.com", "1.5"])
    assert topped.exit_code == 0 and "1.500000" in topped.output
    listed = runner.invoke(users_app, ["list", "--json"])
    assert listed.exit_code == 0 and '"email":"ops@example.com"' in listed.output and '"balance":1.5' in listed.output

    async def check() -> None:
        s = open_store(f"sqlite:///{tmp_path}/cli.db")
        await s.open()
        try:
            found = await s.accounts.user_by_email("ops@example.com")
            assert found is not None and verify_password("pw-ops-12345", found[1])
            assert await _assert_balanced(s.accounts, found[0].wallet_id) == to_units(1.5)
        finally:
            await s.close()

    asyncio.run(check())


@pytest.fixture(params=BACKENDS)
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with backend(request.param, tmp_path) as b:
        yield b


def test_a_key_from_the_version_6_schema_keeps_working(old_database: Any, mocks: MockUpstreams, tmp_path: Path) -> None:
    secret = "sk-or-oldkey000001-" + "s" * 43

    async def build() -> None:
        s = open_store(old_database.database_url)
        await s.open(migrate_to=6)
        cols = "id, name, secret_hash, created_at, updated_at, models, credit_units, spent_units"
        values = f"'oldkey000001', 'old', '{hash_secret(secret)}', 1, 1, '[]', {to_units(1)}, 0"
        sql = f"INSERT INTO keys ({cols}) VALUES ({values})"
        flag = "INSERT INTO omnirelay_flags (name, set_at) VALUES ('key_issued', 1)"
        for statement in (sql, flag):
            if s.dialect == "sqlite":
                await s.writer.execute(statement)  # type: ignore[attr-defined]
            else:
                await s.pool.execute(statement)  # type: ignore[attr-defined]
        await s.close()

    asyncio.run(build())
    cfg = state_config((mocks.url("openai"), mocks.url("anthropic"), mocks.url("gemini")))
    gw = start_gateway(cfg, tmp_path, old_database)
    try:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0, timeout=30)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.status_code == 200
        cost = float(raw.headers["x-omnirelay-cost"])
        assert cost > 0
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=gw.url + "/v1", api_key=secret[:-1] + "t", max_retries=0).chat.completions.create(
                model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        gw.stop()

    async def check() -> None:
        s = open_store(old_database.database_url)
        await s.open()
        try:
            key = await s.get_key("oldkey000001")
            assert key is not None and key.owner_user_id is None and key.credit_units == to_units(1)
            assert key.spent_units == to_units(cost)  # charged to its own credit, as before
        finally:
            await s.close()

    asyncio.run(check())
