"""Versioned schema migrations, one SQL list per dialect, applied in order at start.

The applied version lives in ``omnirelay_schema(version)``. Each backend runs the pending steps in one
transaction under a lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL an advisory lock) so replicas starting
together migrate once. Never edit a released step: append a new one. Tests migrate from empty and from every
prior version (``target`` stops early to build an old schema).
"""

from __future__ import annotations

import msgspec

from omnirelay.state.accounts_schema import ACCOUNTS_POSTGRES, ACCOUNTS_SQLITE


class Migration(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


VERSION_TABLE_SQLITE = "CREATE TABLE IF NOT EXISTS omnirelay_schema (version INTEGER NOT NULL)"
VERSION_TABLE_POSTGRES = "CREATE TABLE IF NOT EXISTS omnirelay_schema (version INTEGER NOT NULL)"
# Any constant: the advisory lock that serialises migrations between replicas.
PG_MIGRATION_LOCK = 0x6F6D6E69
# Set with the first key ever inserted and never cleared: the gateway's default openness depends on it.
KEY_ISSUED_FLAG = "key_issued"
BACKFILL_KEY_ISSUED = (
    f"INSERT INTO omnirelay_flags (name, set_at) SELECT '{KEY_ISSUED_FLAG}', 0"
    " WHERE EXISTS (SELECT 1 FROM keys) OR EXISTS (SELECT 1 FROM usage WHERE key_id IS NOT NULL)"
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="api keys",
        sqlite=(
            """CREATE TABLE keys (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                secret_hash TEXT NOT NULL UNIQUE,
                created_at REAL NOT NULL,
                expires_at REAL,
                disabled INTEGER NOT NULL DEFAULT 0,
                models TEXT NOT NULL DEFAULT '[]',
                rpm INTEGER,
                tpm INTEGER,
                credit_units INTEGER,
                spent_units INTEGER NOT NULL DEFAULT 0
            )""",
        ),
        postgres=(
            """CREATE TABLE keys (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                secret_hash TEXT NOT NULL UNIQUE,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION,
                disabled BOOLEAN NOT NULL DEFAULT FALSE,
                models TEXT NOT NULL DEFAULT '[]',
                rpm INTEGER,
                tpm INTEGER,
                credit_units BIGINT,
                spent_units BIGINT NOT NULL DEFAULT 0
            )""",
        ),
    ),
    Migration(
        version=2,
        description="usage records",
        sqlite=(
            """CREATE TABLE usage (
                request_id TEXT PRIMARY KEY,
                created_at REAL NOT NULL,
                key_id TEXT,
                protocol TEXT NOT NULL,
                model_requested TEXT NOT NULL,
                upstream TEXT,
                provider TEXT,
                model_used TEXT,
                stream INTEGER NOT NULL DEFAULT 0,
                input_tokens INTEGER NOT NULL DEFAULT 0,
                output_tokens INTEGER NOT NULL DEFAULT 0,
                cached_tokens INTEGER NOT NULL DEFAULT 0,
                cache_write_tokens INTEGER NOT NULL DEFAULT 0,
                reasoning_tokens INTEGER NOT NULL DEFAULT 0,
                cost_units INTEGER NOT NULL DEFAULT 0,
                latency_ms REAL NOT NULL DEFAULT 0,
                ttft_ms REAL,
                status INTEGER NOT NULL,
                error TEXT
            )""",
            "CREATE INDEX usage_created ON usage (created_at)",
        ),
        postgres=(
            """CREATE TABLE usage (
                request_id TEXT PRIMARY KEY,
                created_at DOUBLE PRECISION NOT NULL,
                key_id TEXT,
                protocol TEXT NOT NULL,
                model_requested TEXT NOT NULL,
                upstream TEXT,
                provider TEXT,
                model_used TEXT,
                stream BOOLEAN NOT NULL DEFAULT FALSE,
                input_tokens BIGINT NOT NULL DEFAULT 0,
                output_tokens BIGINT NOT NULL DEFAULT 0,
                cached_tokens BIGINT NOT NULL DEFAULT 0,
                cache_write_tokens BIGINT NOT NULL DEFAULT 0,
                reasoning_tokens BIGINT NOT NULL DEFAULT 0,
                cost_units BIGINT NOT NULL DEFAULT 0,
                latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
                ttft_ms DOUBLE PRECISION,
                status INTEGER NOT NULL,
                error TEXT
            )""",
            "CREATE INDEX usage_created ON usage (created_at)",
        ),
    ),
    Migration(
        version=3,
        description="key updated_at, usage attempts, per-key usage index",
        sqlite=(
            "ALTER TABLE keys ADD COLUMN updated_at REAL NOT NULL DEFAULT 0",
            "UPDATE keys SET updated_at = created_at",
            "ALTER TABLE usage ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1",
            "CREATE INDEX usage_key_created ON usage (key_id, created_at)",
        ),
        postgres=(
            "ALTER TABLE keys ADD COLUMN updated_at DOUBLE PRECISION NOT NULL DEFAULT 0",
            "UPDATE keys SET updated_at = created_at",
            "ALTER TABLE usage ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1",
            "CREATE INDEX usage_key_created ON usage (key_id, created_at)",
        ),
    ),
    Migration(
        version=4,
        description="quarantine for usage records the usage table cannot hold",
        # ``record`` is the row as journalled (a JSON array in USAGE_COLUMNS order), kept verbatim so nothing
        # is lost; ``error`` says why the insert failed.
        sqlite=(
            """CREATE TABLE usage_rejected (
                request_id TEXT PRIMARY KEY,
                rejected_at REAL NOT NULL,
                key_id TEXT,
                error TEXT NOT NULL,
                record TEXT NOT NULL
            )""",
        ),
        postgres=(
            """CREATE TABLE usage_rejected (
                request_id TEXT PRIMARY KEY,
                rejected_at DOUBLE PRECISION NOT NULL,
                key_id TEXT,
                error TEXT NOT NULL,
                record TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        version=5,
        description="flags: a key was ever issued (an emptied key store stays closed)",
        sqlite=(
            "CREATE TABLE omnirelay_flags (name TEXT PRIMARY KEY, set_at REAL NOT NULL)",
            BACKFILL_KEY_ISSUED,
        ),
        postgres=(
            "CREATE TABLE omnirelay_flags (name TEXT PRIMARY KEY, set_at DOUBLE PRECISION NOT NULL)",
            BACKFILL_KEY_ISSUED,
        ),
    ),
    Migration(
        version=6,
        description="stored Responses API objects (state/responses.py)",
        # The JSON documents are kept as bytes, exactly as they were returned (PostgreSQL text cannot hold NUL);
        # the expiry index serves the sweep, the primary key every read.
        sqlite=(
            """CREATE TABLE responses (
                id TEXT PRIMARY KEY,
                key_id TEXT,
                created_at REAL NOT NULL,
                expires_at REAL NOT NULL,
                response BLOB NOT NULL,
                input_items BLOB NOT NULL,
                conversation BLOB NOT NULL
            )""",
            "CREATE INDEX responses_expires ON responses (expires_at)",
        ),
        postgres=(
            """CREATE TABLE responses (
                id TEXT PRIMARY KEY,
                key_id TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL,
                response BYTEA NOT NULL,
                input_items BYTEA NOT NULL,
                conversation BYTEA NOT NULL
            )""",
            "CREATE INDEX responses_expires ON responses (expires_at)",
        ),
    ),
    Migration(
        version=8,
        description="accounts: users, teams, groups, wallets and their ledger, redemption codes, console sessions",
        # Keys get an owner (NULL: a key of its own, with its own credit as before). A wallet is "user:<id>" or
        # "team:<id>"; its balance is credited_units - spent_units, kept in the same transaction as each ledger
        # entry (accounts.py), so it always equals the ledger's sum. Usage entries are unique per request id:
        # a replayed journal cannot charge twice. Secrets (codes, session ids) are stored as SHA-256 only.
        sqlite=ACCOUNTS_SQLITE,
        postgres=ACCOUNTS_POSTGRES,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def pending(current: int, target: int | None = None) -> list[Migration]:
    stop = LATEST_VERSION if target is None else target
    if current > LATEST_VERSION:
        raise RuntimeError(
            f"database schema version {current} is newer than this omnirelay ({LATEST_VERSION}): upgrade omnirelay"
        )
    return [m for m in MIGRATIONS if current < m.version <= stop]
