"""The storage interface: keys, usage records and (through ``responses``) stored Responses API objects. SQLite
(default) and PostgreSQL implement it (``state/sqlite.py``, ``state/postgres.py``, sharing ``state/sql.py``);
``state/backends.py`` opens the one a URL names.

Writes of usage are idempotent by ``request_id``: a record is inserted at most once and the key is charged
in the same transaction only when the insert happened, so replaying the journal after a crash can never
charge twice.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from omnirelay.core.records import ResponseStore, UsageRecord
from omnirelay.state.keys import UNITS_PER_USD, KeyRecord

if TYPE_CHECKING:
    from omnirelay.state.accounts import AccountStore

# Columns a caller may set through update_key (the admin API and CLI).
UPDATABLE_KEY_FIELDS = ("name", "expires_at", "disabled", "models", "rpm", "tpm", "credit_units")
SUMMARY_DIMENSIONS = ("key_id", "model_requested", "model_used", "provider", "upstream", "protocol", "status")

USAGE_COLUMNS = (
    "request_id",
    "created_at",
    "key_id",
    "protocol",
    "model_requested",
    "upstream",
    "provider",
    "model_used",
    "stream",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_units",
    "latency_ms",
    "ttft_ms",
    "status",
    "error",
    "attempts",
)


class UsageRow(msgspec.Struct, array_like=True):
    """One usage record as stored (and as journalled: array_like keeps journal lines short). Fields are in
    USAGE_COLUMNS order, so ``values()`` is one C call and rows can be built positionally (both on the hot
    path: ``from_record`` runs on every settle)."""

    request_id: str
    created_at: float
    key_id: str | None
    protocol: str
    model_requested: str
    upstream: str | None
    provider: str | None
    model_used: str | None
    stream: bool
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_units: int
    latency_ms: float
    ttft_ms: float | None
    status: int
    error: str | None
    attempts: int

    @classmethod
    def from_record(cls, r: UsageRecord) -> UsageRow:
        u = r.usage
        ttft = r.ttft_ms
        error = r.error
        return cls(
            r.request_id,
            r.created_at,
            r.key_id,
            r.protocol,
            r.model_requested,
            r.upstream,
            r.provider,
            r.model_used,
            r.stream,
            u.input_tokens,
            u.output_tokens,
            u.cached_tokens,
            u.cache_write_tokens,
            u.reasoning_tokens,
            round(r.cost * UNITS_PER_USD),  # keys.to_units, inlined
            round(r.latency_ms, 3),
            None if ttft is None else round(ttft, 3),
            r.status,
            error[:500] if error else None,
            r.attempts,
        )

    @classmethod
    def from_values(cls, values: Any) -> UsageRow:
        """From a database row in USAGE_COLUMNS order."""
        fields = list(values)
        fields[_STREAM] = bool(fields[_STREAM])  # SQLite stores it as 0/1
        return cls(*fields)

    def values(self) -> tuple[Any, ...]:
        """The row in USAGE_COLUMNS order, for the database."""
        return msgspec.structs.astuple(self)

    def public(self) -> dict[str, Any]:
        out = {c: getattr(self, c) for c in USAGE_COLUMNS if c != "cost_units"}
        out["cost"] = self.cost_units / 1e10
        return out


assert UsageRow.__struct_fields__ == USAGE_COLUMNS  # values() and from_values() rely on the order
_STREAM = USAGE_COLUMNS.index("stream")


class RejectedUsage(msgspec.Struct, kw_only=True):
    """A usage record the usage table could not hold (see UsageWriter): kept, never retried."""

    request_id: str
    rejected_at: float
    key_id: str | None
    error: str  # why the insert failed
    record: str  # the row as journalled: a JSON array in USAGE_COLUMNS order

    def public(self) -> dict[str, Any]:
        try:
            record: Any = dict(zip(USAGE_COLUMNS, msgspec.json.decode(self.record), strict=False))
        except (msgspec.DecodeError, TypeError):
            record = self.record
        return {
            "request_id": self.request_id,
            "rejected_at": self.rejected_at,
            "key_id": self.key_id,
            "error": self.error,
            "record": record,
        }


def rejected_from(row: UsageRow, error: BaseException) -> RejectedUsage:
    try:
        record = _row_encoder.encode(row).decode()
    except (TypeError, ValueError, OverflowError):  # a value JSON cannot carry: keep what Python can print
        record = repr(row.values())
    message = f"{type(error).__name__}: {error}".replace("\x00", "")[:500]
    return RejectedUsage(
        request_id=row.request_id.replace("\x00", ""),
        rejected_at=time.time(),
        key_id=None if row.key_id is None else row.key_id.replace("\x00", ""),
        error=message,
        record=record.replace("\x00", ""),
    )


_row_encoder = msgspec.json.Encoder()


class UsageFilter(msgspec.Struct, kw_only=True):
    since: float | None = None
    until: float | None = None
    key_id: str | None = None
    model: str | None = None  # matches model_requested or model_used
    limit: int | None = None


class Store(ABC):
    dialect: Literal["sqlite", "postgres"]

    @abstractmethod
    async def open(self, migrate_to: int | None = None) -> None:
        """Connect and bring the schema up to date (or to ``migrate_to``, for tests)."""

    @abstractmethod
    async def close(self) -> None: ...

    @property
    @abstractmethod
    def responses(self) -> ResponseStore:
        """The stored Responses API objects, in this database (usable once the store is open)."""

    @property
    @abstractmethod
    def accounts(self) -> AccountStore:
        """Console users, teams, groups, wallets, codes and sessions, in this database (once the store is open)."""

    @abstractmethod
    async def schema_version(self) -> int: ...

    @abstractmethod
    async def load_keys(self) -> list[KeyRecord]: ...

    @abstractmethod
    async def get_key(self, key_id: str) -> KeyRecord | None: ...

    @abstractmethod
    async def insert_key(self, key: KeyRecord) -> None:
        """Insert the key, and first record that a key was issued (``keys_ever_issued``)."""

    @abstractmethod
    async def keys_ever_issued(self) -> bool:
        """Whether a key was ever inserted, even if every key has been deleted since."""

    @abstractmethod
    async def update_key(self, key_id: str, fields: dict[str, Any]) -> KeyRecord | None:
        """Set the given UPDATABLE_KEY_FIELDS (and updated_at); None if there is no such key."""

    @abstractmethod
    async def delete_key(self, key_id: str) -> bool: ...

    @abstractmethod
    async def write_usage(self, rows: list[UsageRow]) -> int:
        """Insert the rows not already present and charge their keys, and the wallets of the keys' owners (one
        ``usage`` ledger entry per row), in one transaction (all or nothing). Returns how many were new."""

    @abstractmethod
    def is_row_error(self, exc: BaseException) -> bool:
        """Whether ``write_usage`` failed because of what the rows hold (a value out of range, a constraint),
        so that retrying the same rows can never succeed; False for the database being away or busy."""

    @abstractmethod
    async def ping(self) -> None:
        """One trivial round trip; raises when the database cannot be reached."""

    @abstractmethod
    async def reject_usage(self, rejected: RejectedUsage) -> None:
        """Keep a record the usage table cannot hold (a second rejection of the same request is a no-op)."""

    @abstractmethod
    async def query_rejected(self, limit: int | None = None) -> list[RejectedUsage]:
        """Rejected records, oldest first."""

    @abstractmethod
    async def query_usage(self, flt: UsageFilter) -> list[UsageRow]: ...

    @abstractmethod
    async def summarize_usage(self, flt: UsageFilter, by: list[str]) -> list[dict[str, Any]]:
        """Totals grouped by ``by`` (a subset of SUMMARY_DIMENSIONS): requests, tokens, cost (USD)."""


def check_dimensions(by: list[str]) -> list[str]:
    for dim in by:
        if dim not in SUMMARY_DIMENSIONS:
            raise ValueError(f"cannot group usage by {dim!r}; choose from {', '.join(SUMMARY_DIMENSIONS)}")
    return by
