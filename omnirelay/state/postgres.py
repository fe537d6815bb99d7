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

from omnirelay.state.keys import KeyRecord
from omnirelay.state.migrations import KEY_ISSUED_FLAG, PG_MIGRATION_LOCK, VERSION_TABLE_POSTGRES, pending
from omnirelay.state.store import (
    SUMMARY_AGGREGATES,
    UPDATABLE_KEY_FIELDS,
    USAGE_COLUMNS,
    RejectedUsage,
    Store,
    UsageFilter,
    UsageRow,
    check_dimensions,
    summary_row,
)

KEY_COLUMNS = (
    "id, name, secret_hash, created_at, updated_at, expires_at, disabled, models, rpm, tpm, credit_units, spent_units"
)
_COLS = ", ".join(USAGE_COLUMNS)
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
    RETURNING key_id, cost_units
), charged AS (
    UPDATE keys SET spent_units = keys.spent_units + s.total
    FROM (SELECT key_id, SUM(cost_units)::bigint AS total FROM inserted WHERE key_id IS NOT NULL GROUP BY key_id) s
    WHERE keys.id = s.key_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM charged)
"""
_rows_encoder = msgspec.json.Encoder()
REJECTED_COLUMNS = "request_id, rejected_at, key_id, error, record"
# SQLSTATE classes that come from the data, not the server's health: 22 data exception (a number out of range
# for bigint, text PostgreSQL cannot hold), 23 integrity constraint violation (NaN, sent as null, in a NOT NULL
# column). Encoding the batch can fail the same way (an integer beyond 64 bits, a lone surrogate).
_ROW_SQLSTATE_CLASSES = ("22", "23")
_ROW_ENCODE_ERRORS = (msgspec.EncodeError, OverflowError, UnicodeError, TypeError)


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


def _key_from_row(row: Any) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
        disabled=row["disabled"],
        models=msgspec.json.decode(row["models"], type=list[str]),
        rpm=row["rpm"],
        tpm=row["tpm"],
        credit_units=row["credit_units"],
        spent_units=row["spent_units"],
    )


def _where(flt: UsageFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.replace("?", f"${len(args)}"))

    if flt.since is not None:
        add("created_at >= ?", flt.since)
    if flt.until is not None:
        add("created_at < ?", flt.until)
    if flt.key_id is not None:
        add("key_id = ?", flt.key_id)
    if flt.model is not None:
        add("(model_requested = ? OR model_used = ?)", flt.model)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


class PostgresStore(Store):
    dialect = "postgres"

    def __init__(self, url: str, min_size: int = 1, max_size: int = 4) -> None:
        self.dsn, self.schema = split_schema(url)
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "store is not open"
        return self._pool

    async def open(self, migrate_to: int | None = None) -> None:
        settings: dict[str, str] = {"application_name": "omnirelay" + (f"/{self.schema}" if self.schema else "")}
        if self.schema:
            conn = await asyncpg.connect(self.dsn)
            try:
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

    async def _migrate(self, target: int | None) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PG_MIGRATION_LOCK)
            await conn.execute(VERSION_TABLE_POSTGRES)
            current = await conn.fetchval("SELECT version FROM omnirelay_schema")
            if current is None:
                await conn.execute("INSERT INTO omnirelay_schema (version) VALUES (0)")
                current = 0
            for step in pending(int(current), target):
                for sql in step.postgres:
                    await conn.execute(sql)
                await conn.execute("UPDATE omnirelay_schema SET version = $1", step.version)

    async def schema_version(self) -> int:
        version = await self.pool.fetchval("SELECT version FROM omnirelay_schema")
        return int(version or 0)

    # -- keys ------------------------------------------------------------------------------------------

    async def load_keys(self) -> list[KeyRecord]:
        return [_key_from_row(r) for r in await self.pool.fetch(f"SELECT {KEY_COLUMNS} FROM keys")]

    async def get_key(self, key_id: str) -> KeyRecord | None:
        row = await self.pool.fetchrow(f"SELECT {KEY_COLUMNS} FROM keys WHERE id = $1", key_id)
        return None if row is None else _key_from_row(row)

    async def keys_ever_issued(self) -> bool:
        return await self.pool.fetchval("SELECT 1 FROM omnirelay_flags WHERE name = $1", KEY_ISSUED_FLAG) is not None

    async def insert_key(self, key: KeyRecord) -> None:
        # The flag first: a crash in between leaves the gateway closed, never open.
        await self.pool.execute(
            "INSERT INTO omnirelay_flags (name, set_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            KEY_ISSUED_FLAG,
            time.time(),
        )
        await self.pool.execute(
            f"INSERT INTO keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            key.id,
            key.name,
            key.secret_hash,
            key.created_at,
            key.updated_at,
            key.expires_at,
            key.disabled,
            msgspec.json.encode(key.models).decode(),
            key.rpm,
            key.tpm,
            key.credit_units,
            key.spent_units,
        )

    async def update_key(self, key_id: str, fields: dict[str, Any]) -> KeyRecord | None:
        sets = ["updated_at = $1"]
        args: list[Any] = [time.time()]
        for name, value in fields.items():
            if name not in UPDATABLE_KEY_FIELDS:
                raise ValueError(f"key field {name!r} cannot be updated")
            args.append(msgspec.json.encode(value).decode() if name == "models" else value)
            sets.append(f"{name} = ${len(args)}")
        args.append(key_id)
        row = await self.pool.fetchrow(
            f"UPDATE keys SET {', '.join(sets)} WHERE id = ${len(args)} RETURNING {KEY_COLUMNS}", *args
        )
        return None if row is None else _key_from_row(row)

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
        await self.pool.execute(
            f"INSERT INTO usage_rejected ({REJECTED_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (request_id) DO NOTHING",
            rejected.request_id,
            rejected.rejected_at,
            rejected.key_id,
            rejected.error,
            rejected.record,
        )

    async def query_rejected(self, limit: int | None = None) -> list[RejectedUsage]:
        sql = f"SELECT {REJECTED_COLUMNS} FROM usage_rejected ORDER BY rejected_at, request_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [
            RejectedUsage(
                request_id=r["request_id"],
                rejected_at=r["rejected_at"],
                key_id=r["key_id"],
                error=r["error"],
                record=r["record"],
            )
            for r in await self.pool.fetch(sql)
        ]

    async def query_usage(self, flt: UsageFilter) -> list[UsageRow]:
        where, args = _where(flt)
        sql = f"SELECT {_COLS} FROM usage{where} ORDER BY created_at, request_id"
        if flt.limit is not None:
            sql += f" LIMIT {int(flt.limit)}"
        return [UsageRow.from_values(r) for r in await self.pool.fetch(sql, *args)]

    async def summarize_usage(self, flt: UsageFilter, by: list[str]) -> list[dict[str, Any]]:
        dims = check_dimensions(by)
        where, args = _where(flt)
        group = f" GROUP BY {', '.join(dims)} ORDER BY {', '.join(dims)}" if dims else ""
        rows = await self.pool.fetch(
            f"SELECT {', '.join([*dims, *SUMMARY_AGGREGATES])} FROM usage{where}{group}", *args
        )
        return [summary_row(dims, r) for r in rows]
