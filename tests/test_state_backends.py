"""The state layer below the HTTP API, on SQLite and PostgreSQL (+ Redis for the shared limiter): migrations
from empty and from every prior version, idempotent usage writes that charge exactly once, the journal's
replay after a crash and while the database is away, and the limiter semantics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from omnirelay.state.backends import open_store
from omnirelay.state.keys import key_id_of, new_key, secret_matches, to_units
from omnirelay.state.local_limits import Limiter, Limits, LocalLimiter
from omnirelay.state.migrations import KEY_ISSUED_FLAG, LATEST_VERSION, MIGRATIONS
from omnirelay.state.redis_limits import RedisLimiter
from omnirelay.state.store import Store, UsageFilter, UsageRow
from omnirelay.state.usage import UsageWriter
from tests.polling import wait_until_async
from tests.state_helpers import BACKENDS, PG_BASE, REDIS_URL, drop_schema

# The async fixtures live on the session loop (pyproject); the tests must run there too.
on_session_loop = pytest.mark.asyncio(loop_scope="session")


def _url(kind: str, tmp_path: Path, tag: str) -> str:
    return f"{PG_BASE}?schema=omni_{tag}" if kind == "postgres" else f"sqlite:///{tmp_path}/state.db"


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    tag = "u" + uuid.uuid4().hex[:12]
    yield _url(request.param, tmp_path, tag)
    if request.param == "postgres":
        await drop_schema(tag)


@pytest.fixture()
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


@on_session_loop
async def test_replicas_starting_at_once_create_one_schema(tmp_path: Path) -> None:
    """Several workers opening a schema that does not exist yet, at the same instant: every one of them opens
    (PostgreSQL's CREATE SCHEMA IF NOT EXISTS alone lets all but one fail on pg_namespace's unique index)."""
    tag = "u" + uuid.uuid4().hex[:12]
    stores = [open_store(_url("postgres", tmp_path, tag)) for _ in range(6)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
        versions = await asyncio.gather(*(s.schema_version() for s in stores))
        assert versions == [LATEST_VERSION] * len(stores)
    finally:
        for s in stores:
            await s.close()
        await drop_schema(tag)


def _row(request_id: str, key_id: str | None, cost_units: int, created_at: float | None = None, **kw: Any) -> UsageRow:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "created_at": created_at if created_at is not None else time.time(),
        "key_id": key_id,
        "protocol": "openai",
        "model_requested": "gpt-4.1",
        "upstream": "mock-openai",
        "provider": "openai",
        "model_used": "gpt-4.1",
        "stream": False,
        "input_tokens": 12,
        "output_tokens": 7,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost_units": cost_units,
        "latency_ms": 12.5,
        "ttft_ms": 10.0,
        "status": 200,
        "error": None,
        "attempts": 1,
    }
    fields.update(kw)
    return UsageRow(**fields)


def test_secret_hashing_and_id() -> None:
    rec, secret = new_key("a", credit=1.5, models=["gpt-*"])
    assert key_id_of(secret) == rec.id and secret not in rec.secret_hash and len(rec.secret_hash) == 64
    assert secret_matches(secret, rec) and not secret_matches(secret + "x", rec)
    assert rec.credit_units == to_units(1.5) == 15_000_000_000
    assert key_id_of("sk-proj-abc") is None


@on_session_loop
async def test_keys_crud(store: Store) -> None:
    rec, _secret = new_key("team-a", credit=25, models=["gpt-4.1*", "claude-*"], rpm=60, tpm=100_000)
    await store.insert_key(rec)
    got = await store.get_key(rec.id)
    assert got is not None and got.models == ["gpt-4.1*", "claude-*"] and got.credit_units == 25 * 10**10
    assert got.secret_hash == rec.secret_hash and got.rpm == 60 and got.disabled is False
    updated = await store.update_key(rec.id, {"disabled": True, "models": [], "credit_units": None})
    assert updated is not None and updated.disabled is True and updated.models == [] and updated.credit_units is None
    assert updated.updated_at >= rec.updated_at
    assert await store.update_key("nope", {"disabled": True}) is None
    with pytest.raises(ValueError):
        await store.update_key(rec.id, {"spent_units": 0})
    assert [k.id for k in await store.load_keys()] == [rec.id]
    assert await store.delete_key(rec.id) is True and await store.delete_key(rec.id) is False


@on_session_loop
async def test_usage_write_is_idempotent_and_charges_once(store: Store) -> None:
    rec, _ = new_key("k", credit=1)
    await store.insert_key(rec)
    rows = [_row(f"req_{i}", rec.id, 1000 + i) for i in range(5)] + [_row("req_anon", None, 77)]
    assert await store.write_usage(rows) == 6
    # A replay (journal after a crash) with overlap and an in-batch duplicate: only the new one counts.
    assert await store.write_usage([*rows[:3], _row("req_new", rec.id, 5), _row("req_new", rec.id, 5)]) == 1
    key = await store.get_key(rec.id)
    assert key is not None and key.spent_units == sum(1000 + i for i in range(5)) + 5
    got = await store.query_usage(UsageFilter(key_id=rec.id))
    assert len(got) == 6 and got[0] == rows[0]


@on_session_loop
async def test_sqlite_writes_survive_a_transaction_a_cancelled_writer_left_open(tmp_path: Path) -> None:
    # A cancel that lands while BEGIN runs in aiosqlite's thread leaves the transaction open behind the writer's
    # back (seen at shutdown: every later flush failed with "cannot start a transaction within a transaction").
    url = f"sqlite:///{tmp_path}/left-open.db"
    store = open_store(url)
    await store.open()
    try:
        rec, _ = new_key("k", credit=1)
        writer = store.writer  # type: ignore[attr-defined]
        await writer.execute("BEGIN IMMEDIATE")  # what the cancelled writer left behind
        await store.insert_key(rec)
        assert await store.write_usage([_row("req_after", rec.id, 9)]) == 1
        await writer.execute("BEGIN IMMEDIATE")
        assert await store.update_key(rec.id, {"name": "renamed"}) is not None
    finally:
        await store.close()
    # Everything above was committed, not swallowed by the stale transaction: a fresh connection sees it.
    again = open_store(url)
    await again.open()
    try:
        key = await again.get_key(rec.id)
        assert key is not None and key.name == "renamed" and key.spent_units == 9
    finally:
        await again.close()


@on_session_loop
async def test_sqlite_write_after_a_cancelled_begin_still_queued(tmp_path: Path) -> None:
    """A BEGIN whose caller was cancelled while it still waited in aiosqlite's queue runs later, behind the
    writer's back: the next write must not find its transaction open only once its own BEGIN is queued (seen at
    shutdown of bench.inproc: "cannot start a transaction within a transaction", 273 records left pending)."""
    store = open_store(f"sqlite:///{tmp_path}/queued.db")
    await store.open()
    try:
        rec, _ = new_key("k", credit=1)
        await store.insert_key(rec)
        writer = store.writer  # type: ignore[attr-defined]
        # Keep the connection's thread busy so that the BEGIN below is still queued when it is cancelled.
        slow = asyncio.create_task(
            writer.execute_fetchall(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) "
                "SELECT count(*) FROM c"
            )
        )
        begin = asyncio.create_task(writer.execute("BEGIN IMMEDIATE"))
        await asyncio.sleep(0.01)
        assert not slow.done() and not writer.in_transaction
        begin.cancel()
        assert await store.write_usage([_row("req_after_cancel", rec.id, 9)]) == 1
        await slow
        key = await store.get_key(rec.id)
        assert key is not None and key.spent_units == 9
        assert not writer.in_transaction
    finally:
        await store.close()


@on_session_loop
async def test_large_usage_batches_charge_only_new_rows(store: Store) -> None:
    """Batches big enough for the multi-row inserts (SQLite: groups of 40 plus the rest one by one; PostgreSQL:
    one JSON payload), with a replay overlapping them, duplicates inside a group and rows of no key."""
    a, _ = new_key("a", credit=1)
    b, _ = new_key("b", credit=1)
    await store.insert_key(a)
    await store.insert_key(b)
    keys = [a.id, b.id, None]
    first = [_row(f"r{i:03d}", keys[i % 3], 10 + i, ttft_ms=None if i % 5 else 1.5) for i in range(95)]
    assert await store.write_usage(first) == 95
    dup = _row("r200", a.id, 1000)
    replay = [*first[40:], dup, *(_row(f"r{i:03d}", keys[i % 3], 10 + i) for i in range(95, 130)), dup]
    assert await store.write_usage(replay) == 36
    spent = {k.id: k.spent_units for k in await store.load_keys()}
    charged = [r for r in [*first, *replay[55:-1]] if r.key_id is not None]
    assert spent[a.id] == sum(r.cost_units for r in charged if r.key_id == a.id)
    assert spent[b.id] == sum(r.cost_units for r in charged if r.key_id == b.id)
    got = {r.request_id: r for r in await store.query_usage(UsageFilter())}
    assert len(got) == 131 and got["r000"] == first[0] and got["r011"] == first[11] and got["r200"] == dup


@on_session_loop
async def test_usage_filters_and_summary(store: Store) -> None:
    t0 = 1_700_000_000.0
    rows = [
        _row("a", "k1", 10, t0),
        _row("b", "k1", 20, t0 + 10, model_requested="claude-x", model_used="claude-x", status=429),
        _row("c", "k2", 30, t0 + 20, cached_tokens=5),
    ]
    await store.write_usage(rows)
    assert [r.request_id for r in await store.query_usage(UsageFilter(since=t0 + 5))] == ["b", "c"]
    assert [r.request_id for r in await store.query_usage(UsageFilter(until=t0 + 10))] == ["a"]
    assert [r.request_id for r in await store.query_usage(UsageFilter(model="claude-x"))] == ["b"]
    assert [r.request_id for r in await store.query_usage(UsageFilter(limit=1))] == ["a"]
    summary = await store.summarize_usage(UsageFilter(), ["key_id", "model_requested"])
    assert summary[0] == {
        "key_id": "k1",
        "model_requested": "claude-x",
        "requests": 1,
        "input_tokens": 12,
        "cached_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 7,
        "reasoning_tokens": 0,
        "cost": 20 / 1e10,
        "errors": 1,
    }
    totals = await store.summarize_usage(UsageFilter(), [])
    assert totals[0]["requests"] == 3 and totals[0]["cost"] == 60 / 1e10 and totals[0]["cached_tokens"] == 5
    with pytest.raises(ValueError):
        await store.summarize_usage(UsageFilter(), ["secret_hash"])


@pytest.mark.parametrize("start_version", [0, *(m.version for m in MIGRATIONS[:-1])])
@on_session_loop
async def test_migrations_from_each_prior_version(store_url: str, start_version: int) -> None:
    old = open_store(store_url)
    await old.open(migrate_to=start_version)
    assert await old.schema_version() == start_version
    if start_version >= 1:  # data written by the old schema must survive the upgrade
        cols = "id, name, secret_hash, created_at, models, credit_units, spent_units"
        statements = [f"INSERT INTO keys ({cols}) VALUES ('oldkey', 'old', 'h', 100.0, '[]', 5, 2)"]
        if start_version >= 5:  # from version 5 on, inserting a key also sets the flag (Store.insert_key)
            statements.append(f"INSERT INTO omnirelay_flags (name, set_at) VALUES ('{KEY_ISSUED_FLAG}', 100.0)")
        for statement in statements:
            if old.dialect == "sqlite":
                await old.writer.execute(statement)  # type: ignore[attr-defined]
            else:
                await old.pool.execute(statement)  # type: ignore[attr-defined]
    await old.close()
    new = open_store(store_url)
    await new.open()
    try:
        assert await new.schema_version() == LATEST_VERSION
        if start_version >= 1:
            key = await new.get_key("oldkey")
            assert key is not None and key.credit_units == 5 and key.spent_units == 2
            assert key.updated_at == (100.0 if start_version < 3 else 0.0)  # version 3 filled it in
        # A store that held a key before version 5 counts as having issued one (it stays closed when emptied).
        assert await new.keys_ever_issued() is (start_version >= 1)
        await new.write_usage([_row("r1", "oldkey", 3)])
        assert (await new.query_usage(UsageFilter()))[0].attempts == 1
        # Opening again is a no-op; a second process starting at the same time waits for the lock.
        again = [open_store(store_url), open_store(store_url)]
        await asyncio.gather(*(s.open() for s in again))
        for s in again:
            assert await s.schema_version() == LATEST_VERSION
            await s.close()
    finally:
        await new.close()


# -- the journal ---------------------------------------------------------------------------------------


@on_session_loop
async def test_journal_replays_records_of_a_killed_writer(store: Store, tmp_path: Path) -> None:
    rec, _ = new_key("k", credit=1)
    await store.insert_key(rec)
    journal = tmp_path / "journal"
    dead = UsageWriter(store, journal, flush_s=3600)
    await dead.start()
    await asyncio.gather(*(dead.record(_row(f"j{i}", rec.id, 100)) for i in range(50)))
    await dead.flush()  # 50 committed, their segment dropped
    await asyncio.gather(*(dead.record(_row(f"k{i}", rec.id, 100)) for i in range(30)))
    # "SIGKILL": the process is gone without flushing; the kernel releases its flock.
    assert dead._loop_task is not None
    dead._loop_task.cancel()
    dead.journal.close(remove=False)
    assert len(list(journal.glob("*.jnl"))) >= 1
    with (next(journal.glob("*.jnl"))).open("ab") as f:
        f.write(b'["torn", 1.0, "k')  # a write the dead process never acknowledged
    fresh = UsageWriter(store, journal, flush_s=3600)
    await fresh.start()
    key = await store.get_key(rec.id)
    assert key is not None and key.spent_units == 80 * 100
    assert len(await store.query_usage(UsageFilter(key_id=rec.id))) == 80
    assert [p.name for p in journal.iterdir() if not p.name.startswith(fresh.journal.owner)] == []
    await fresh.stop()
    assert list(journal.iterdir()) == []


class CountingStore:
    def __init__(self) -> None:
        self.rows: list[UsageRow] = []

    async def write_usage(self, rows: list[UsageRow]) -> int:
        self.rows.extend(rows)
        return len(rows)


@on_session_loop
async def test_journal_appends_once_per_tick_and_each_record_waits_for_it(tmp_path: Path) -> None:
    writer = UsageWriter(CountingStore(), tmp_path / "journal", fsync=False, flush_s=3600)  # type: ignore[arg-type]
    await writer.start()
    writes: list[bytes] = []
    write = writer.journal.write

    def counting_write(data: bytes) -> None:
        writes.append(data)
        write(data)

    writer.journal.write = counting_write  # type: ignore[method-assign]

    def journalled() -> bytes:
        return b"".join(p.read_bytes() for p in (tmp_path / "journal").glob("*.jnl"))

    async def settle(i: int) -> None:
        await writer.record(_row(f"t{i}", None, 1))
        assert f'"t{i}"'.encode() in journalled()  # on disk (in the kernel) by the time record() returns

    await asyncio.gather(*(settle(i) for i in range(40)))
    assert len(writes) == 1 and writes[0].count(b"\n") == 40
    # A settle cancelled while it waits for the tick still leaves its record journalled and queued.
    task = asyncio.create_task(writer.record(_row("cancelled", None, 1)))
    await asyncio.sleep(0)  # one loop step, not a wait: the task runs up to its first await (the tick) and no further
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert b'"cancelled"' in journalled() and len(writer.pending) == 41
    await writer.stop()
    assert len(writer.store.rows) == 41  # type: ignore[attr-defined]


class FlakyStore:
    """A store whose database is "restarting" while ``down`` is set."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.down = False
        self.refused = 0  # writes attempted while down

    async def write_usage(self, rows: list[UsageRow]) -> int:
        if self.down:
            self.refused += 1
            raise ConnectionError("database restarting")
        return await self.inner.write_usage(rows)


@on_session_loop
async def test_records_wait_in_the_journal_while_the_database_is_down(store: Store, tmp_path: Path) -> None:
    flaky = FlakyStore(store)
    writer = UsageWriter(flaky, tmp_path / "journal", flush_s=0.05)  # type: ignore[arg-type]
    await writer.start()
    flaky.down = True
    await asyncio.gather(*(writer.record(_row(f"d{i}", None, 1)) for i in range(20)))
    await wait_until_async(lambda: flaky.refused >= 2, 5, "two flushes refused by the database")
    assert await store.query_usage(UsageFilter()) == [] and len(writer.pending) == 20
    assert any(p.stat().st_size > 0 for p in (tmp_path / "journal").glob("*.jnl"))
    flaky.down = False
    await wait_until_async(lambda: writer.committed == 20, 10, "the 20 records committed")
    assert len(await store.query_usage(UsageFilter())) == 20
    await writer.stop()


# -- limiters ----------------------------------------------------------------------------------------------


@pytest.fixture(params=["local", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    if request.param == "local":
        yield LocalLimiter()
        return
    prefix = f"omni-test-{uuid.uuid4().hex[:10]}:"
    lim = RedisLimiter(REDIS_URL, prefix)
    await lim.start()
    yield lim
    await lim.close()
    r = aioredis.Redis.from_url(REDIS_URL)
    async for name in r.scan_iter(f"{prefix}*"):
        await r.delete(name)
    await r.aclose()


def _limits(**kw: Any) -> Limits:
    base: dict[str, Any] = {
        "key_id": "k",
        "request_id": uuid.uuid4().hex,
        "rpm": None,
        "tpm": None,
        "est_tokens": 10,
        "credit_units": None,
        "spent_units": 0,
        "reserve_units": 0,
        "reserve_ttl_s": 600.0,
    }
    base.update(kw)
    return Limits(**base)


@on_session_loop
async def test_rpm_window(limiter: Limiter) -> None:
    verdicts = [(await limiter.admit(_limits(rpm=3))).verdict for _ in range(4)]
    assert verdicts == ["ok", "ok", "ok", "rpm"]
    d = await limiter.admit(_limits(rpm=3))
    assert d.rpm_remaining == 0 and 0 < d.rpm_reset_s <= 60


@on_session_loop
async def test_tpm_estimate_then_correction(limiter: Limiter) -> None:
    first = _limits(tpm=100, est_tokens=80)
    assert (await limiter.admit(first)).verdict == "ok"
    assert (await limiter.admit(_limits(tpm=100, est_tokens=30))).verdict == "tpm"
    await limiter.settle("k", first.request_id, cost_units=0, token_delta=-60, tpm=True, credit=False)  # used 20
    d = await limiter.admit(_limits(tpm=100, est_tokens=30))
    assert d.verdict == "ok" and d.tpm_remaining == 50


@on_session_loop
async def test_credit_reservations(limiter: Limiter) -> None:
    # 100 units of credit, 30 already spent; each request reserves 30 and is admitted only if what is left
    # covers it.
    held = [_limits(credit_units=100, spent_units=30, reserve_units=30) for _ in range(3)]
    assert [(await limiter.admit(h)).verdict for h in held] == ["ok", "ok", "credit"]  # 70, 40 left, then 10 < 30
    shared = isinstance(limiter, RedisLimiter)
    await limiter.settle("k", held[0].request_id, cost_units=5, token_delta=0, tpm=False, credit=True)
    # Local: the caller reports spent (30 + 5); Redis: its counter already has the 5.
    spent = 30 if shared else 35
    nxt = _limits(credit_units=100, spent_units=spent, reserve_units=30)
    assert (await limiter.admit(nxt)).verdict == "ok"  # 100 - 35 - 30 = 35 covers 30
    too_big = _limits(credit_units=100, spent_units=spent, reserve_units=36)
    assert (await limiter.admit(too_big)).verdict == "credit"  # 100 - 35 - 60 = 5 does not cover 36
    if isinstance(limiter, RedisLimiter):
        assert await limiter.spent("k") == 35


@on_session_loop
async def test_batch_holds_count_against_credit_and_are_never_stored(limiter: Limiter) -> None:
    # 100 units of credit, 60 held by open batches: a request reserving 50 is refused, one reserving 40 fits.
    assert (await limiter.admit(_limits(credit_units=100, held_units=60, reserve_units=50))).verdict == "credit"
    fits = _limits(credit_units=100, held_units=60, reserve_units=40)
    assert (await limiter.admit(fits)).verdict == "ok"
    await limiter.settle("k", fits.request_id, cost_units=0, token_delta=0, tpm=False, credit=True)
    # The batches ended: nothing of their hold stays behind (Redis seeded its counter with spent only).
    assert (await limiter.admit(_limits(credit_units=100, reserve_units=100))).verdict == "ok"
    if isinstance(limiter, RedisLimiter):
        assert await limiter.spent("k") == 0


@on_session_loop
async def test_redis_reservation_of_a_dead_replica_expires() -> None:
    lim = RedisLimiter(REDIS_URL, f"omni-test-{uuid.uuid4().hex[:10]}:")
    await lim.start()
    try:
        orphan = _limits(credit_units=100, reserve_units=100, reserve_ttl_s=0.3)
        assert (await lim.admit(orphan)).verdict == "ok"
        assert (await lim.admit(_limits(credit_units=100, reserve_units=1))).verdict == "credit"
        # Polled: a refused admit reserves nothing, and the first one admitted is the proof of the expiry.
        deadline = time.monotonic() + 5
        while (await lim.admit(_limits(credit_units=100, reserve_units=1))).verdict != "ok":
            assert time.monotonic() < deadline, "the orphan reservation never expired"
            await asyncio.sleep(0.02)
    finally:
        await lim.close()


def test_sqlite_has_no_busy_errors_with_concurrent_processes(tmp_path: Path) -> None:
    """Four processes hammering one SQLite file (the CLI next to workers): every write goes through."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/busy.db"
    script = (
        "import asyncio, sys, time\n"
        "from omnirelay.state.backends import open_store\n"
        "from tests.test_state_backends import _row\n"
        "async def main():\n"
        f"    s = open_store({url!r}); await s.open()\n"
        "    for i in range(40):\n"
        "        await s.write_usage([_row(f'{sys.argv[1]}-{i}-{j}', None, 1) for j in range(25)])\n"
        "    await s.close()\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(n)], env=env, stderr=subprocess.PIPE) for n in range(4)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()

    async def count() -> int:
        s = open_store(url)
        await s.open()
        n = len(await s.query_usage(UsageFilter()))
        await s.close()
        return n

    assert asyncio.run(count()) == 4 * 40 * 25
