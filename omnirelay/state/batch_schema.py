"""The tables of uploaded files and batch jobs (migration 7), one template for both dialects: they differ only in
the names of the float, integer and bytes types. Never edit this once released: append a migration."""

from __future__ import annotations

_TABLES = (
    """CREATE TABLE files (
        id TEXT PRIMARY KEY,
        key_id TEXT,
        purpose TEXT NOT NULL,
        filename TEXT NOT NULL,
        bytes {INT} NOT NULL,
        lines {INT} NOT NULL,
        created_at {REAL} NOT NULL,
        content {BLOB} NOT NULL
    )""",
    "CREATE INDEX files_key_created ON files (key_id, created_at)",
    """CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        key_id TEXT,
        api TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        input_file_id TEXT,
        completion_window TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at {REAL} NOT NULL,
        expires_at {REAL} NOT NULL,
        in_progress_at {REAL},
        finalizing_at {REAL},
        completed_at {REAL},
        failed_at {REAL},
        expired_at {REAL},
        cancelling_at {REAL},
        cancelled_at {REAL},
        metadata TEXT,
        output_file_id TEXT,
        error_file_id TEXT,
        reserved_units {INT} NOT NULL DEFAULT 0,
        models TEXT NOT NULL DEFAULT '[]',
        native_upstream TEXT,
        native_id TEXT,
        lease_owner TEXT,
        lease_expires {REAL}
    )""",
    "CREATE INDEX batches_key_created ON batches (key_id, created_at)",
    "CREATE INDEX batches_status ON batches (status)",
    # native_upstream: the upstream whose own batch API runs this batch (native_id: its batch id there); the
    # runner holding lease_owner until lease_expires polls it next. lease_owner of a done item: who ran it.
    # One row per request. state: pending | running | done; outcome (when done): succeeded | errored |
    # canceled | expired; result: the reply or error body; request_id: the usage record's (batch id + index,
    # so a re-run item never charges twice).
    """CREATE TABLE batch_items (
        batch_id TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
        idx {INT} NOT NULL,
        custom_id TEXT NOT NULL,
        body {BLOB} NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        outcome TEXT,
        status_code {INT},
        result {BLOB},
        request_id TEXT,
        lease_owner TEXT,
        lease_expires {REAL},
        attempts {INT} NOT NULL DEFAULT 0,
        reserve_units {INT} NOT NULL DEFAULT 0,
        cost_units {INT} NOT NULL DEFAULT 0,
        PRIMARY KEY (batch_id, idx)
    )""",
    "CREATE INDEX batch_items_open ON batch_items (state, batch_id, idx)",
)


def _render(types: dict[str, str]) -> tuple[str, ...]:
    return tuple(t.format(**types) for t in _TABLES)


BATCH_TABLES_SQLITE = _render({"INT": "INTEGER", "REAL": "REAL", "BLOB": "BLOB"})
BATCH_TABLES_POSTGRES = _render({"INT": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA"})
