"""The storage interface: keys and usage records. SQLite (default) and PostgreSQL implement it.

Writes of usage are idempotent by ``request_id``: a record is inserted at most once and the key is charged
in the same transaction only when the insert happened, so replaying the journal after a crash can never
charge twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

import msgspec

from omnirelay.server.gate import UsageRecord
from omnirelay.state.keys import KeyRecord, to_units

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


class UsageRow(msgspec.Struct, kw_only=True, array_like=True):
    """One usage record as stored (and as journalled: array_like keeps journal lines short)."""

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
        return cls(
            request_id=r.request_id,
            created_at=r.created_at,
            key_id=r.key_id,
            protocol=r.protocol,
            model_requested=r.model_requested,
            upstream=r.upstream,
            provider=r.provider,
            model_used=r.model_used,
            stream=r.stream,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cached_tokens=u.cached_tokens,
            cache_write_tokens=u.cache_write_tokens,
            reasoning_tokens=u.reasoning_tokens,
            cost_units=to_units(r.cost),
            latency_ms=round(r.latency_ms, 3),
            ttft_ms=None if r.ttft_ms is None else round(r.ttft_ms, 3),
            status=r.status,
            error=r.error[:500] if r.error else None,
            attempts=r.attempts,
        )

    @classmethod
    def from_values(cls, values: Any) -> UsageRow:
        """From a database row in USAGE_COLUMNS order."""
        fields = dict(zip(USAGE_COLUMNS, values, strict=True))
        fields["stream"] = bool(fields["stream"])
        return cls(**fields)

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, c) for c in USAGE_COLUMNS)

    def public(self) -> dict[str, Any]:
        out = {c: getattr(self, c) for c in USAGE_COLUMNS if c != "cost_units"}
        out["cost"] = self.cost_units / 1e10
        return out


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

    @abstractmethod
    async def schema_version(self) -> int: ...

    @abstractmethod
    async def load_keys(self) -> list[KeyRecord]: ...

    @abstractmethod
    async def get_key(self, key_id: str) -> KeyRecord | None: ...

    @abstractmethod
    async def insert_key(self, key: KeyRecord) -> None: ...

    @abstractmethod
    async def update_key(self, key_id: str, fields: dict[str, Any]) -> KeyRecord | None:
        """Set the given UPDATABLE_KEY_FIELDS (and updated_at); None if there is no such key."""

    @abstractmethod
    async def delete_key(self, key_id: str) -> bool: ...

    @abstractmethod
    async def write_usage(self, rows: list[UsageRow]) -> int:
        """Insert the rows not already present and charge their keys, in one transaction.
        Returns how many were new."""

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


SUMMARY_AGGREGATES = (
    "COUNT(*)",
    "COALESCE(SUM(input_tokens), 0)",
    "COALESCE(SUM(cached_tokens), 0)",
    "COALESCE(SUM(cache_write_tokens), 0)",
    "COALESCE(SUM(output_tokens), 0)",
    "COALESCE(SUM(reasoning_tokens), 0)",
    "COALESCE(SUM(cost_units), 0)",
    "COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0)",
)


def summary_row(dims: list[str], row: Any) -> dict[str, Any]:
    out: dict[str, Any] = dict(zip(dims, row[: len(dims)], strict=True))
    n = len(dims)
    out.update(
        requests=int(row[n]),
        input_tokens=int(row[n + 1]),
        cached_tokens=int(row[n + 2]),
        cache_write_tokens=int(row[n + 3]),
        output_tokens=int(row[n + 4]),
        reasoning_tokens=int(row[n + 5]),
        cost=int(row[n + 6]) / 1e10,
        errors=int(row[n + 7]),
    )
    return out


def open_store(database_url: str) -> Store:
    """The store for a URL: ``sqlite:///path`` (or a bare path) or ``postgresql://...``."""
    if database_url.startswith(("postgres://", "postgresql://")):
        from omnirelay.state.postgres import PostgresStore

        return PostgresStore(database_url)
    from omnirelay.state.sqlite import SqliteStore

    # SQLAlchemy's spelling: sqlite:///relative.db, sqlite:////absolute/path.db; a bare path also works.
    path = database_url.removeprefix("sqlite:///") if database_url.startswith("sqlite:///") else database_url
    return SqliteStore(path)
