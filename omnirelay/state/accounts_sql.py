"""How the accounts code talks to either database: one ``Runner`` per store (SQLite through the store's single
writer connection and its lock, PostgreSQL through its pool), statements written once with ``?`` placeholders
(turned into ``$1``... for asyncpg), and the statements the usage write shares with the accounts.

Wallet ids are ``user:<id>`` or ``team:<id>``: the wallet a key draws from follows its owner (a team member's
keys draw from the team's wallet), decided in SQL by ``WALLET_OF_USER`` when a usage batch is written."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

Row = Sequence[Any]

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


_PLACEHOLDER = re.compile(r"\?")
_dollar_cache: dict[str, str] = {}


def dollarize(sql: str) -> str:
    """``?`` placeholders -> ``$1``, ``$2``... (the accounts' statements hold no literal question mark)."""
    out = _dollar_cache.get(sql)
    if out is None:
        counter = iter(range(1, 10_000))
        out = _dollar_cache[sql] = _PLACEHOLDER.sub(lambda _m: f"${next(counter)}", sql)
    return out


class Tx(ABC):
    """Statements inside one transaction."""

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
