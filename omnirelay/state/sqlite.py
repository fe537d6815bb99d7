"""SQLite store: the default, one file, nothing to run.

Why it never returns SQLITE_BUSY under load: WAL mode lets readers and the writer proceed together; this
process writes through exactly one connection (serialised by an asyncio lock); every write transaction
starts with ``BEGIN IMMEDIATE`` so it takes the write lock up front instead of upgrading a read transaction
(an upgrade that would fail with SQLITE_BUSY without waiting); and ``busy_timeout`` makes the rare
cross-process contention (the CLI, a second worker) wait instead of failing. ``synchronous=FULL`` because
the usage journal is deleted once a batch commits: the commit must be on disk by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from itertools import chain
from pathlib import Path
from typing import Any

import aiosqlite
from msgspec.structs import astuple

from omnirelay.core.batches import BatchStore, FileStore
from omnirelay.core.records import ResponseStore, StoredResponse
from omnirelay.state import sql
from omnirelay.state.accounts import AccountStore
from omnirelay.state.accounts_sql import DbRunner, usage_ledger_sql
from omnirelay.state.batch_db import SqliteDb
from omnirelay.state.batch_sql import SqlBatches, SqlFiles
from omnirelay.state.keys import KeyRecord
from omnirelay.state.migrations import KEY_ISSUED_FLAG, VERSION_TABLE_SQLITE, pending
from omnirelay.state.responses import SWEEP_BATCH, too_large_to_store, unreadable_id, visible_to
from omnirelay.state.sql import KEY_COLUMNS, USAGE_COLUMN_LIST, key_from_row, qmark
from omnirelay.state.store import USAGE_COLUMNS, RejectedUsage, Store, UsageFilter, UsageRow

BUSY_TIMEOUT_MS = 30_000
_COLS = USAGE_COLUMN_LIST
_MARKS = sql.marks(qmark, len(USAGE_COLUMNS))
# 40 rows x 20 columns = 800 parameters, under the 999 per statement of SQLite builds before 3.32.
_ROWS_PER_INSERT = 40
# ON CONFLICT skips only a row already stored (a journal replay), unlike OR IGNORE, which would also drop a row
# breaking another constraint without a word.
_INSERT_ONE = f"INSERT INTO usage ({_COLS}) VALUES ({_MARKS}) ON CONFLICT (request_id) DO NOTHING"
_INSERT_GROUP = (
    f"INSERT INTO usage ({_COLS}) VALUES "
    + ", ".join([f"({_MARKS})"] * _ROWS_PER_INSERT)
    + " ON CONFLICT (request_id) DO NOTHING"
)
# NOT INDEXED: otherwise the planner walks the whole (key_id, created_at) index to save the GROUP BY's sort,
# instead of reading the batch's rowid range.
_ADDED_BY_KEY = "SELECT key_id, SUM(cost_units), COUNT(*) FROM usage NOT INDEXED WHERE rowid > ? GROUP BY key_id"
# The batch's rows are those above the rowid mark (see write_usage); NOT INDEXED for the same reason as above.
_LEDGER_USAGE = usage_ledger_sql("usage AS u NOT INDEXED", " AND u.rowid > ?")
_DEBIT_WALLETS = (
    "UPDATE wallets SET spent_units = spent_units + t.total FROM (SELECT wallet_id, -SUM(amount_units) AS total"
    " FROM ledger WHERE id > ? GROUP BY wallet_id) AS t WHERE wallets.id = t.wallet_id"
)
_PUT_RESPONSE = sql.put_response_sql(qmark, "responses.key_id IS excluded.key_id")  # IS: NULL-safe equality
_GET_RESPONSE = sql.get_response_sql(qmark)
_SWEEP_RESPONSES = sql.sweep_responses_sql(qmark)


# Errors that come from what the rows hold: retrying the same rows cannot help (see Store.is_row_error).
# OverflowError: an integer beyond SQLite's 64 bits; UnicodeEncodeError: a lone surrogate in a text; IntegrityError:
# e.g. NaN, which sqlite3 binds as NULL, in a NOT NULL column; InterfaceError: a value of a type it cannot bind.
_ROW_ERRORS = (
    OverflowError,
    UnicodeEncodeError,
    TypeError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
)
PRIVATE_FILE_MODE = 0o600


def _prepare_files(path: str) -> None:
    """Create the database's directory and the file itself readable by this user only (keys' hashes, balances
    and usage live there). SQLite gives the -wal and -shm files the mode of the database file, so these
    follow; a file left 0644 by an older version is tightened, with its -wal and -shm."""
    db = Path(path).expanduser()
    if not db.parent.is_dir():
        db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(db, os.O_CREAT | os.O_RDWR, PRIVATE_FILE_MODE))
    for file in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        try:
            if file.stat().st_mode & 0o077:
                file.chmod(PRIVATE_FILE_MODE)
        except FileNotFoundError:
            pass


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._responses = SqliteResponses(self)
        self._files = SqlFiles(SqliteDb(self))
        self._batches = SqlBatches(SqliteDb(self))
        self._accounts = AccountStore(DbRunner(SqliteDb(self), _unique_violation))

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")
        return conn

    @property
    def writer(self) -> aiosqlite.Connection:
        assert self._writer is not None, "store is not open"
        return self._writer

    @property
    def reader(self) -> aiosqlite.Connection:
        assert self._reader is not None, "store is not open"
        return self._reader

    async def open(self, migrate_to: int | None = None) -> None:
        if self.path != ":memory:" and not self.path.startswith("file:"):
            await asyncio.to_thread(_prepare_files, self.path)
        self._writer = await self._connect()
        await self._migrate(migrate_to)
        # A second connection for reads: in WAL mode it never waits for the writer.
        self._reader = self._writer if self.path == ":memory:" else await self._connect()

    async def close(self) -> None:
        for conn in {id(c): c for c in (self._reader, self._writer) if c is not None}.values():
            await conn.close()
        self._writer = self._reader = None

    @property
    def responses(self) -> ResponseStore:
        return self._responses

    @property
    def accounts(self) -> AccountStore:
        return self._accounts

    @property
    def files(self) -> FileStore:
        return self._files

    @property
    def batches(self) -> BatchStore:
        return self._batches

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """The writer inside ``BEGIN IMMEDIATE`` under the write lock: committed when the block ends, rolled
        back if it raises."""
        async with self._write_lock:
            await self._begin()
            try:
                yield self.writer
                await self.writer.execute("COMMIT")
            except BaseException:
                if self.writer.in_transaction:
                    await self.writer.execute("ROLLBACK")
                raise

    async def _writable(self) -> aiosqlite.Connection:
        """The writer, with no transaction left open. Call with the write lock held. A cancel that lands while
        BEGIN runs in aiosqlite's thread finds ``in_transaction`` still false and cannot roll back; without this
        the next BEGIN would fail ("cannot start a transaction within a transaction") and autocommit writes
        would join the stale transaction. Whatever is open here is such a leftover: roll it back (its usage rows
        are still in the journal). A cancelled BEGIN may also still wait in aiosqlite's queue, to run after the
        check: one round trip through the connection's thread first (it runs calls in order) lets it run."""
        w = self.writer
        await w.execute_fetchall("SELECT 1")
        if w.in_transaction:
            await w.execute("ROLLBACK")
        return w

    async def _begin(self) -> None:
        await (await self._writable()).execute("BEGIN IMMEDIATE")

    async def _migrate(self, target: int | None) -> None:
        async with self._write_lock:
            await self._begin()
            try:
                await self.writer.execute(VERSION_TABLE_SQLITE)
                current = await self._version(self.writer)
                if current is None:
                    await self.writer.execute("INSERT INTO omnirelay_schema (version) VALUES (0)")
                    current = 0
                for step in pending(current, target):
                    for statement in step.sqlite:
                        await self.writer.execute(statement)
                    await self.writer.execute("UPDATE omnirelay_schema SET version = ?", (step.version,))
                await self.writer.execute("COMMIT")
            except BaseException:
                if self.writer.in_transaction:  # a cancel can land before BEGIN ran: nothing to roll back
                    await self.writer.execute("ROLLBACK")
                raise

    @staticmethod
    async def _version(conn: aiosqlite.Connection) -> int | None:
        async with conn.execute("SELECT version FROM omnirelay_schema") as cur:
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    async def schema_version(self) -> int:
        return await self._version(self.reader) or 0

    # -- keys ------------------------------------------------------------------------------------------

    async def load_keys(self) -> list[KeyRecord]:
        async with self.reader.execute(f"SELECT {KEY_COLUMNS} FROM keys") as cur:
            rows = await cur.fetchall()
        return [key_from_row(r) for r in rows]

    async def get_key(self, key_id: str) -> KeyRecord | None:
        async with self.reader.execute(f"SELECT {KEY_COLUMNS} FROM keys WHERE id = ?", (key_id,)) as cur:
            row = await cur.fetchone()
        return None if row is None else key_from_row(row)

    async def keys_ever_issued(self) -> bool:
        async with self.reader.execute("SELECT 1 FROM omnirelay_flags WHERE name = ?", (KEY_ISSUED_FLAG,)) as cur:
            return await cur.fetchone() is not None

    async def insert_key(self, key: KeyRecord) -> None:
        async with self._write_lock:
            # The flag first: a crash in between leaves the gateway closed, never open.
            await (await self._writable()).execute(
                "INSERT INTO omnirelay_flags (name, set_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (KEY_ISSUED_FLAG, time.time()),
            )
            await self.writer.execute(sql.insert_key_sql(qmark), sql.key_values(key))

    async def update_key(self, key_id: str, fields: dict[str, Any]) -> KeyRecord | None:
        sets, args = sql.key_update(fields, qmark)
        async with self._write_lock:
            await (await self._writable()).execute(f"UPDATE keys {sets} WHERE id = ?", (*args, key_id))
        return await self.get_key(key_id)

    async def delete_key(self, key_id: str) -> bool:
        async with self._write_lock:
            cur = await (await self._writable()).execute("DELETE FROM keys WHERE id = ?", (key_id,))
            return cur.rowcount > 0

    # -- usage -----------------------------------------------------------------------------------------

    async def write_usage(self, rows: list[UsageRow]) -> int:
        if not rows:
            return 0
        values = list(map(astuple, rows))  # UsageRow.values(), without a Python call per row
        # Full groups go in multi-row INSERTs: the connection's thread binds a whole group under the GIL, then
        # releases it once for the group's step instead of once per row (each reacquisition competes with
        # the event loop); the few rows left over go one by one.
        n = _ROWS_PER_INSERT
        whole = len(values) - len(values) % n
        groups = [list(chain.from_iterable(values[i : i + n])) for i in range(0, whole, n)]
        w = self.writer
        async with self._write_lock:
            await self._begin()
            try:
                # The rows this batch adds get rowids above the current maximum (SQLite's rowid allocation; the
                # write lock is ours), so that range is exactly what to charge: a replayed row is skipped by
                # ON CONFLICT and charged nowhere. (The former staging table, deduplicated with
                # ``IN (SELECT request_id FROM usage)``, made SQLite walk the whole usage index every flush.)
                ((mark,),) = await w.execute_fetchall("SELECT COALESCE(MAX(rowid), 0) FROM usage")
                if groups:
                    await w.executemany(_INSERT_GROUP, groups)
                if whole < len(values):
                    await w.executemany(_INSERT_ONE, values[whole:])
                added = await w.execute_fetchall(_ADDED_BY_KEY, (mark,))
                charges = [(total, key_id) for key_id, total, _ in added if key_id is not None and total]
                if charges:
                    await w.executemany("UPDATE keys SET spent_units = spent_units + ? WHERE id = ?", charges)
                    # The owners' wallets: one ledger entry per charged row, then each wallet by their sum.
                    ((ledger_mark,),) = await w.execute_fetchall("SELECT COALESCE(MAX(id), 0) FROM ledger")
                    entries = await w.execute(_LEDGER_USAGE, (mark,))
                    if entries.rowcount:
                        await w.execute(_DEBIT_WALLETS, (ledger_mark,))
                await w.execute("COMMIT")
            except BaseException:
                if w.in_transaction:  # a cancel (shutdown) can land before BEGIN ran: nothing to roll back
                    await w.execute("ROLLBACK")
                raise
        return sum(count for _, _, count in added)

    def is_row_error(self, exc: BaseException) -> bool:
        if isinstance(exc, _ROW_ERRORS):
            return True
        # SUM(cost_units) over a batch of (each storable) rows past 2**63: a smaller batch fits.
        return isinstance(exc, sqlite3.OperationalError) and "integer overflow" in str(exc)

    async def ping(self) -> None:
        await self.reader.execute_fetchall("SELECT 1")

    async def reject_usage(self, rejected: RejectedUsage) -> None:
        async with self._write_lock:
            await (await self._writable()).execute(sql.reject_sql(qmark), sql.rejected_values(rejected))

    async def query_rejected(self, limit: int | None = None) -> list[RejectedUsage]:
        rows = await self.reader.execute_fetchall(sql.rejected_query(limit))
        return [sql.rejected_from_row(r) for r in rows]

    async def query_usage(self, flt: UsageFilter) -> list[UsageRow]:
        query, args = sql.usage_query(flt, qmark)
        async with self.reader.execute(query, args) as cur:
            rows = await cur.fetchall()
        return [UsageRow.from_values(r) for r in rows]

    async def summarize_usage(self, flt: UsageFilter, by: list[str]) -> list[dict[str, Any]]:
        query, args = sql.summary_query(flt, by, qmark)
        async with self.reader.execute(query, args) as cur:
            rows = await cur.fetchall()
        return [sql.summary_row(by, r) for r in rows]


def _unique_violation(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)


class SqliteResponses(ResponseStore):
    """Stored responses in the store's file: writes through its one writer connection (under its lock), reads
    through its reader."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    async def put(self, r: StoredResponse) -> None:
        if too_large_to_store(r):
            return
        async with self.store._write_lock:
            await (await self.store._writable()).execute(_PUT_RESPONSE, sql.response_values(r))

    async def get(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        if unreadable_id(response_id):
            return None
        async with self.store.reader.execute(_GET_RESPONSE, (response_id,)) as cur:
            row = await cur.fetchone()
        found = None if row is None else sql.response_from_row(row)
        return found if found is not None and visible_to(found, key_id, time.time()) else None

    async def delete(self, response_id: str, key_id: str | None) -> bool:
        if unreadable_id(response_id):
            return False
        statement, args = sql.delete_response(response_id, key_id, time.time(), qmark)
        async with self.store._write_lock:
            cur = await (await self.store._writable()).execute(statement, args)
            return cur.rowcount > 0

    async def sweep(self, now: float, limit: int = SWEEP_BATCH) -> int:
        async with self.store._write_lock:
            cur = await (await self.store._writable()).execute(_SWEEP_RESPONSES, (now, limit))
            return cur.rowcount
