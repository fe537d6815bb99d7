"""The accounts tables (migration step 8), per dialect: written once with the dialect's types filled in."""

from __future__ import annotations

_TABLES = (
    "ALTER TABLE keys ADD COLUMN owner_user_id TEXT",
    "CREATE INDEX keys_owner ON keys (owner_user_id)",
    """CREATE TABLE user_groups (
        name TEXT PRIMARY KEY,
        multiplier {real} NOT NULL,
        created_at {real} NOT NULL
    )""",
    "INSERT INTO user_groups (name, multiplier, created_at) VALUES ('default', 1.0, 0)",
    """CREATE TABLE teams (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        group_name TEXT,
        created_at {real} NOT NULL
    )""",
    """CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        team_id TEXT,
        group_name TEXT,
        disabled {bool} NOT NULL DEFAULT {false},
        created_at {real} NOT NULL,
        updated_at {real} NOT NULL
    )""",
    "CREATE INDEX users_team ON users (team_id)",
    """CREATE TABLE wallets (
        id TEXT PRIMARY KEY,
        credited_units {int} NOT NULL DEFAULT 0,
        spent_units {int} NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE ledger (
        id {serial},
        wallet_id TEXT NOT NULL,
        created_at {real} NOT NULL,
        amount_units {int} NOT NULL,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        actor TEXT,
        ref TEXT
    )""",
    "CREATE INDEX ledger_wallet ON ledger (wallet_id, id)",
    "CREATE UNIQUE INDEX ledger_usage_ref ON ledger (ref) WHERE kind = 'usage'",
    """CREATE TABLE redemption_codes (
        id TEXT PRIMARY KEY,
        batch_id TEXT NOT NULL,
        code_hash TEXT NOT NULL,
        amount_units {int} NOT NULL,
        created_at {real} NOT NULL,
        created_by TEXT,
        expires_at {real},
        note TEXT,
        redeemed_by TEXT,
        redeemed_at {real}
    )""",
    "CREATE INDEX redemption_codes_batch ON redemption_codes (batch_id)",
    """CREATE TABLE console_sessions (
        id_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        csrf_hash TEXT NOT NULL,
        created_at {real} NOT NULL,
        expires_at {real} NOT NULL
    )""",
    "CREATE INDEX console_sessions_user ON console_sessions (user_id)",
    "CREATE TABLE login_failures (scope TEXT NOT NULL, at {real} NOT NULL)",
    "CREATE INDEX login_failures_scope ON login_failures (scope, at)",
)

ACCOUNTS_SQLITE = tuple(
    t.format(real="REAL", int="INTEGER", bool="INTEGER", false="0", serial="INTEGER PRIMARY KEY AUTOINCREMENT")
    for t in _TABLES
)
ACCOUNTS_POSTGRES = tuple(
    t.format(real="DOUBLE PRECISION", int="BIGINT", bool="BOOLEAN", false="FALSE", serial="BIGSERIAL PRIMARY KEY")
    for t in _TABLES
)
