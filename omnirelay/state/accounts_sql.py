"""How the accounts code talks to either database: a ``Runner`` over the store's ``batch_db.Db`` (SQLite through
the store's single writer connection and its lock, PostgreSQL through its pool; statements written once with
``?`` placeholders), and the statements the usage write shares with the accounts.

Wallet ids are ``user:<id>`` or ``team:<id>``: the wallet a key draws from follows its owner (a team member's
keys draw from the team's wallet), decided in SQL by ``WALLET_OF_USER`` when a usage batch is written."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from omnirelay.state import batch_db
from omnirelay.state.batch_db import Row

__all__ = ["LEDGER_COLUMNS", "SPENDING_KINDS", "WALLET_OF_USER", "DbRunner", "Row", "Runner", "Tx", "usage_ledger_sql"]

# The wallet of the user row aliased ``us``.
WALLET_OF_USER = "CASE WHEN us.team_id IS NOT NULL THEN 'team:' || us.team_id ELSE 'user:' || us.id END"
# Kinds whose entries count as spending (``wallets.spent_units``); every other kind is a credit (may be negative).
SPENDING_KINDS = ("usage", "batch")
LEDGER_COLUMNS = "id, wallet_id, created_at, amount_units, kind, reason, actor, ref"


def usage_ledger_sql(source: str, filter_sql: str) -> str:
    """Insert one ``usage`` entry per charged usage row of ``source`` (aliased ``u``) whose key has an owner:
    the row's cost, negative, in the owner's wallet. The unique index on ``ref`` for usage entries makes a
    replayed row a no-op even if it got here."""
    return (
        "INSERT INTO ledger (wallet_id, created_at, amount_units, kind, reason, actor, ref)"
        f" SELECT {WALLET_OF_USER}, u.created_at, -u.cost_units, 'usage', COALESCE(u.model_used, u.model_requested),"
        f" NULL, u.request_id FROM {source} JOIN keys AS k ON k.id = u.key_id"
        " JOIN users AS us ON us.id = k.owner_user_id"
        f" WHERE u.cost_units <> 0{filter_sql} ON CONFLICT DO NOTHING"
    )


class Tx(ABC):
    """Statements inside one transaction (arguments as positional parameters)."""

    @abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    @abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it changed."""

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None


class Runner(ABC):
    """A store's way to run the accounts' statements."""

    @abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """A read outside any transaction."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction: committed when the block ends, rolled back if it raises."""

    @abstractmethod
    def is_unique_violation(self, exc: BaseException) -> bool:
        """Whether a statement failed on a unique constraint (two writers inserting the same email at once)."""

    async def fetchone(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None


class _DbTx(Tx):
    def __init__(self, tx: batch_db.Tx) -> None:
        self.tx = tx

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self.tx.fetch(sql, args)

    async def execute(self, sql: str, *args: Any) -> int:
        return await self.tx.execute(sql, args)


class DbRunner(Runner):
    """The accounts over a store's ``batch_db.Db`` (the same reads and write transactions the batch and file
    stores use: SQLite's one writer under its lock, PostgreSQL's pool, ``?`` turned into ``$n``)."""

    def __init__(self, db: batch_db.Db, unique_violation: Callable[[BaseException], bool]) -> None:
        self.db = db
        self._unique_violation = unique_violation

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self.db.fetch(sql, args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.db.transaction() as tx:
            yield _DbTx(tx)

    def is_unique_violation(self, exc: BaseException) -> bool:
        return self._unique_violation(exc)
