"""PostgreSQL store (asyncpg pool) for several gateway replicas sharing keys, balances and usage.

``?schema=NAME`` on the URL puts the tables in that schema (created if missing): handy to keep several
deployments, or test runs, in one database. A batch of usage records is one statement: insert what is new,
charge the keys for exactly those rows.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec

from omnirelay.core.batches import BatchStore, FileStore
from omnirelay.core.records import ResponseStore, StoredResponse
from omnirelay.state import sql
from omnirelay.state.accounts import AccountStore
from omnirelay.state.accounts_sql import DbRunner, usage_ledger_sql
from omnirelay.state.batch_db import PostgresDb
from omnirelay.state.batch_sql import SqlBatches, SqlFiles
from omnirelay.state.keys import KeyRecord
from omnirelay.state.migrations import KEY_ISSUED_FLAG, PG_MIGRATION_LOCK, VERSION_TABLE_POSTGRES, pending
from omnirelay.state.responses import SWEEP_BATCH, too_large_to_store, unreadable_id, visible_to
from omnirelay.state.sql import KEY_COLUMNS, USAGE_COLUMN_LIST, dollar, key_from_row
from omnirelay.state.store import RejectedUsage, Store, UsageFilter, UsageRow

_COLS = USAGE_COLUMN_LIST
_COLUMN_TYPES = (
    "text",  # request_id
    "float8",  # created_at
    "text",  # key_id
    "text",  # protocol
    "text",  # model_requested
    "text",  # upstream
    "text",  # provider
    "text",  # model_used
    "bool",  # stream
    "int8",  # input_tokens
    "int8",  # output_tokens
    "int8",  # cached_tokens
    "int8",  # cache_write_tokens
    "int8",  # reasoning_tokens
    "int8",  # cost_units
    "float8",  # latency_ms
    "float8",  # ttft_ms
    "int4",  # status
    "text",  # error
    "int4",  # attempts
)
# The batch travels as one JSON text (each row a JSON array in USAGE_COLUMNS order, as journalled): msgspec
# encodes it in one C call, and PostgreSQL takes it apart, where encoding twenty arrays of Python values
# cost the gateway's event loop ~15 µs per row.
_FIELDS = ", ".join(f"(r->>{i})::{t}" for i, t in enumerate(_COLUMN_TYPES))
WRITE_USAGE_SQL = f"""
WITH batch AS (
    SELECT DISTINCT ON (request_id) * FROM (SELECT {_FIELDS} FROM jsonb_array_elements($1::jsonb) AS r) AS t({_COLS})
), inserted AS (
    INSERT INTO usage ({_COLS}) SELECT {_COLS} FROM batch
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id, created_at, key_id, cost_units, model_requested, model_used
), charged AS (
    UPDATE keys SET spent_units = keys.spent_units + s.total
    FROM (SELECT key_id, SUM(cost_units)::bigint AS total FROM inserted WHERE key_id IS NOT NULL GROUP BY key_id) s
    WHERE keys.id = s.key_id
    RETURNING 1
), entries AS (
    {usage_ledger_sql("inserted AS u", "")}
    RETURNING wallet_id, amount_units
), debited AS (
    UPDATE wallets SET spent_units = wallets.spent_units + s.total
    FROM (SELECT wallet_id, -SUM(amount_units)::bigint AS total FROM entries GROUP BY wallet_id) s
    WHERE wallets.id = s.wallet_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM charged), (SELECT count(*) FROM debited)
"""
_rows_encoder = msgspec.json.Encoder()
# SQLSTATE classes that come from the data, not the server's health: 22 data exception (a number out of range
# for bigint, text PostgreSQL cannot hold), 23 integrity constraint violation (NaN, sent as null, in a NOT NULL
# column). Encoding the batch can fail the same way (an integer beyond 64 bits, a lone surrogate).
_ROW_SQLSTATE_CLASSES = ("22", "23")
_ROW_ENCODE_ERRORS = (msgspec.EncodeError, OverflowError, UnicodeError, TypeError)
_PUT_RESPONSE = sql.put_response_sql(dollar, "responses.key_id IS NOT DISTINCT FROM excluded.key_id")
_GET_RESPONSE = sql.get_response_sql(dollar)
_SWEEP_RESPONSES = sql.sweep_responses_sql(dollar)


def split_schema(url: str) -> tuple[str, str | None]:
    """Take omnirelay's own ``schema`` parameter off the URL (asyncpg would pass it to the server)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


def _without_nul(row: UsageRow) -> UsageRow:
    fields: list[Any] = [v.replace("\x00", "") if isinstance(v, str) else v for v in row.values()]
    return UsageRow(*fields)


class PostgresStore(Store):
    dialect = "postgres"

    def __init__(self, url: str, min_size: int = 1, max_size: int = 4) -> None:
        self.dsn, self.schema = split_schema(url)
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._responses = PostgresResponses(self)
        self._files = SqlFiles(PostgresDb(self))
        self._batches = SqlBatches(PostgresDb(self))
        self._accounts = AccountStore(
            DbRunner(PostgresDb(self), lambda exc: isinstance(exc, asyncpg.UniqueViolationError))
        )

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "store is not open"
        return self._pool

    async def open(self, migrate_to: int | None = None) -> None:
        settings: dict[str, str] = {"application_name": "omnirelay" + (f"/{self.schema}" if self.schema else "")}
        if self.schema:
            conn = await asyncpg.connect(self.dsn)
            try:
                # IF NOT EXISTS is not safe against a concurrent CREATE (two workers starting at once: one fails
                # on pg_namespace's unique index), so schema creation takes the migrations' lock too.
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", PG_MIGRATION_LOCK)
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            finally:
                await conn.close()
            settings["search_path"] = self.schema
        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=self.min_size, max_size=self.max_size, server_settings=settings
        )
        await self._migrate(migrate_to)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

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

    async def _migrate(self, target: int | None) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PG_MIGRATION_LOCK)
            await conn.execute(VERSION_TABLE_POSTGRES)
            current = await conn.fetchval("SELECT version FROM omnirelay_schema")
            if current is None:
                await conn.execute("INSERT INTO omnirelay_schema (version) VALUES (0)")
                current = 0
            for step in pending(int(current), target):
                for statement in step.postgres:
                    await conn.execute(statement)
                await conn.execute("UPDATE omnirelay_schema SET version = $1", step.version)

    async def schema_version(self) -> int:
        version = await self.pool.fetchval("SELECT version FROM omnirelay_schema")
        return int(version or 0)

    # -- keys ------------------------------------------------------------------------------------------

    async def load_keys(self) -> list[KeyRecord]:
        return [key_from_row(r) for r in await self.pool.fetch(f"SELECT {KEY_COLUMNS} FROM keys")]

    async def get_key(self, key_id: str) -> KeyRecord | None:
        row = await self.pool.fetchrow(f"SELECT {KEY_COLUMNS} FROM keys WHERE id = $1", key_id)
        return None if row is None else key_from_row(row)

    async def keys_ever_issued(self) -> bool:
        return await self.pool.fetchval("SELECT 1 FROM omnirelay_flags WHERE name = $1", KEY_ISSUED_FLAG) is not None

    async def insert_key(self, key: KeyRecord) -> None:
        # The flag first: a crash in between leaves the gateway closed, never open.
        await self.pool.execute(
            "INSERT INTO omnirelay_flags (name, set_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            KEY_ISSUED_FLAG,
            time.time(),
        )
        await self.pool.execute(sql.insert_key_sql(dollar), *sql.key_values(key))

    async def update_key(self, key_id: str, fields: dict[str, Any]) -> KeyRecord | None:
        sets, args = sql.key_update(fields, dollar)
        args.append(key_id)
        row = await self.pool.fetchrow(f"UPDATE keys {sets} WHERE id = ${len(args)} RETURNING {KEY_COLUMNS}", *args)
        return None if row is None else key_from_row(row)

    async def delete_key(self, key_id: str) -> bool:
        result: str = await self.pool.execute("DELETE FROM keys WHERE id = $1", key_id)
        return result.endswith(" 1")

    # -- usage -----------------------------------------------------------------------------------------

    async def write_usage(self, rows: list[UsageRow]) -> int:
        if not rows:
            return 0
        payload = _rows_encoder.encode(rows).decode()
        if "\\u0000" in payload:  # PostgreSQL text cannot hold NUL (a model name sent by a client, an error)
            payload = _rows_encoder.encode([_without_nul(r) for r in rows]).decode()
        record = await self.pool.fetchrow(WRITE_USAGE_SQL, payload)
        assert record is not None
        return int(record[0])

    def is_row_error(self, exc: BaseException) -> bool:
        if isinstance(exc, _ROW_ENCODE_ERRORS):
            return True
        sqlstate = getattr(exc, "sqlstate", None) if isinstance(exc, asyncpg.PostgresError) else None
        return isinstance(sqlstate, str) and sqlstate[:2] in _ROW_SQLSTATE_CLASSES

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def reject_usage(self, rejected: RejectedUsage) -> None:
        await self.pool.execute(sql.reject_sql(dollar), *sql.rejected_values(rejected))

    async def query_rejected(self, limit: int | None = None) -> list[RejectedUsage]:
        return [sql.rejected_from_row(r) for r in await self.pool.fetch(sql.rejected_query(limit))]

    async def query_usage(self, flt: UsageFilter) -> list[UsageRow]:
        query, args = sql.usage_query(flt, dollar)
        return [UsageRow.from_values(r) for r in await self.pool.fetch(query, *args)]

    async def summarize_usage(self, flt: UsageFilter, by: list[str]) -> list[dict[str, Any]]:
        query, args = sql.summary_query(flt, by, dollar)
        return [sql.summary_row(by, r) for r in await self.pool.fetch(query, *args)]


def _deleted(status: str) -> int:
    """The row count of asyncpg's command status (``DELETE 3``)."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresResponses(ResponseStore):
    """Stored responses in the store's database, through its pool."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def put(self, r: StoredResponse) -> None:
        if too_large_to_store(r):
            return
        await self.store.pool.execute(_PUT_RESPONSE, *sql.response_values(r))

    async def get(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        if unreadable_id(response_id):
            return None
        row = await self.store.pool.fetchrow(_GET_RESPONSE, response_id)
        found = None if row is None else sql.response_from_row(row)
        return found if found is not None and visible_to(found, key_id, time.time()) else None

    async def delete(self, response_id: str, key_id: str | None) -> bool:
        if unreadable_id(response_id):
            return False
        statement, args = sql.delete_response(response_id, key_id, time.time(), dollar)
        return _deleted(await self.store.pool.execute(statement, *args)) > 0

    async def sweep(self, now: float, limit: int = SWEEP_BATCH) -> int:
        return _deleted(await self.store.pool.execute(_SWEEP_RESPONSES, now, limit))
