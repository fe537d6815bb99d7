"""The little the batch and file stores need from a database, for SQLite and PostgreSQL: reads, and a write
transaction whose statements return rows or a row count. Statements are written with ``?`` placeholders and
turned into PostgreSQL's ``$n`` once each."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiosqlite
    import asyncpg

    from omnirelay.state.postgres import PostgresStore
    from omnirelay.state.sqlite import SqliteStore

Row = Sequence[Any]


class Tx(ABC):
    @abstractmethod
    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...

    @abstractmethod
    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """The number of rows the statement changed."""

    @abstractmethod
    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None: ...

    @abstractmethod
    async def serialize(self, lock: int) -> None:
        """Wait until no other transaction, in any process, holds ``lock``; hold it until this one ends."""


class Db(ABC):
    # What a claim's row selection ends with: PostgreSQL locks the rows it takes and skips those another
    # replica's claim holds; SQLite has one writer, whose transaction already excludes every other claim.
    skip_locked: str = ""

    @abstractmethod
    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]: ...

    @abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]: ...


class SqliteTx(Tx):
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return list(await self.conn.execute_fetchall(sql, args))

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        cur = await self.conn.execute(sql, args)
        return int(cur.rowcount)

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        await self.conn.executemany(sql, rows)

    async def serialize(self, lock: int) -> None:
        return None  # the transaction began with BEGIN IMMEDIATE: it holds the database's one write lock already


class SqliteDb(Db):
    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return list(await self.store.reader.execute_fetchall(sql, args))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.store.transaction() as conn:
            yield SqliteTx(conn)


_converted: dict[str, str] = {}


def dollars(sql: str) -> str:
    """``?`` -> ``$1``, ``$2``... (the statements here have no ``?`` inside literals)."""
    out = _converted.get(sql)
    if out is None:
        parts = sql.split("?")
        out = parts[0] + "".join(f"${i}{rest}" for i, rest in enumerate(parts[1:], 1))
        _converted[sql] = out
    return out


def _count(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PostgresTx(Tx):
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return list(await self.conn.fetch(dollars(sql), *args))

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return _count(await self.conn.execute(dollars(sql), *args))

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        await self.conn.executemany(dollars(sql), rows)

    async def serialize(self, lock: int) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock($1)", lock)


class PostgresDb(Db):
    skip_locked = " FOR UPDATE OF i SKIP LOCKED"

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        return list(await self.store.pool.fetch(dollars(sql), *args))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.store.pool.acquire() as conn, conn.transaction():
            yield PostgresTx(conn)
