"""What the SQL stores share: the column lists, row <-> record conversion, and the statements that differ between
SQLite and PostgreSQL only in how a parameter is written (``?`` or ``$1``: a dialect's ``Mark``). Each backend
keeps its own connection handling and the statements where the two really differ (the usage batch write)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from omnirelay.core.records import StoredResponse
from omnirelay.state.keys import KeyRecord
from omnirelay.state.store import UPDATABLE_KEY_FIELDS, USAGE_COLUMNS, RejectedUsage, UsageFilter, check_dimensions

Mark = Callable[[int], str]  # 1-based parameter number -> its placeholder in the dialect


def qmark(_: int) -> str:
    """SQLite's placeholder."""
    return "?"


def dollar(n: int) -> str:
    """PostgreSQL's (asyncpg's) placeholder."""
    return f"${n}"


KEY_COLUMNS = (
    "id, name, secret_hash, created_at, updated_at, expires_at, disabled, models, rpm, tpm, credit_units, spent_units,"
    " owner_user_id"
)
KEY_COLUMN_COUNT = KEY_COLUMNS.count(",") + 1
USAGE_COLUMN_LIST = ", ".join(USAGE_COLUMNS)
REJECTED_COLUMNS = "request_id, rejected_at, key_id, error, record"
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


def marks(mark: Mark, count: int, start: int = 1) -> str:
    return ", ".join(mark(i) for i in range(start, start + count))


# -- keys ----------------------------------------------------------------------------------------------


def key_from_row(row: Sequence[Any]) -> KeyRecord:
    """A key from a row in KEY_COLUMNS order (a sqlite3 tuple or an asyncpg Record, both indexable)."""
    return KeyRecord(
        id=row[0],
        name=row[1],
        secret_hash=row[2],
        created_at=row[3],
        updated_at=row[4],
        expires_at=row[5],
        disabled=bool(row[6]),  # SQLite stores it as 0/1
        models=msgspec.json.decode(row[7], type=list[str]),
        rpm=row[8],
        tpm=row[9],
        credit_units=row[10],
        spent_units=row[11],
        owner_user_id=row[12],
    )


def key_values(key: KeyRecord) -> tuple[Any, ...]:
    """The key as a row in KEY_COLUMNS order (``models`` as JSON text)."""
    models = msgspec.json.encode(key.models).decode()
    return (
        key.id,
        key.name,
        key.secret_hash,
        key.created_at,
        key.updated_at,
        key.expires_at,
        key.disabled,
        models,
        key.rpm,
        key.tpm,
        key.credit_units,
        key.spent_units,
        key.owner_user_id,
    )


def insert_key_sql(mark: Mark) -> str:
    return f"INSERT INTO keys ({KEY_COLUMNS}) VALUES ({marks(mark, KEY_COLUMN_COUNT)})"


def key_update(fields: dict[str, Any], mark: Mark) -> tuple[str, list[Any]]:
    """``SET ...`` for the given fields (and updated_at) and its arguments; the key's id is the next parameter.
    Only UPDATABLE_KEY_FIELDS may be set (ValueError otherwise)."""
    sets = [f"updated_at = {mark(1)}"]
    args: list[Any] = [time.time()]
    for name, value in fields.items():
        if name not in UPDATABLE_KEY_FIELDS:
            raise ValueError(f"key field {name!r} cannot be updated")
        if name == "models":
            value = msgspec.json.encode(value).decode()
        elif name == "disabled":
            value = bool(value)
        args.append(value)
        sets.append(f"{name} = {mark(len(args))}")
    return "SET " + ", ".join(sets), args


# -- usage -----------------------------------------------------------------------------------------------


def usage_where(flt: UsageFilter, mark: Mark) -> tuple[str, list[Any]]:
    """`` WHERE ...`` for the filter (empty when it filters nothing) and its arguments."""
    clauses: list[str] = []
    args: list[Any] = []

    def add(sql: str, *values: Any) -> None:
        parts = sql.split("?")
        text = parts[0]
        for value, rest in zip(values, parts[1:], strict=True):
            args.append(value)
            text += mark(len(args)) + rest
        clauses.append(text)

    if flt.since is not None:
        add("created_at >= ?", flt.since)
    if flt.until is not None:
        add("created_at < ?", flt.until)
    if flt.key_id is not None:
        add("key_id = ?", flt.key_id)
    if flt.model is not None:
        add("(model_requested = ? OR model_used = ?)", flt.model, flt.model)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def usage_query(flt: UsageFilter, mark: Mark) -> tuple[str, list[Any]]:
    """The rows a filter selects, oldest first, in USAGE_COLUMNS order."""
    where, args = usage_where(flt, mark)
    sql = f"SELECT {USAGE_COLUMN_LIST} FROM usage{where} ORDER BY created_at, request_id"
    if flt.limit is not None:
        sql += f" LIMIT {int(flt.limit)}"
    return sql, args


def summary_query(flt: UsageFilter, by: list[str], mark: Mark) -> tuple[str, list[Any]]:
    """Totals per group of ``by`` (validated against SUMMARY_DIMENSIONS); rows read with ``summary_row``."""
    dims = check_dimensions(by)
    where, args = usage_where(flt, mark)
    group = f" GROUP BY {', '.join(dims)} ORDER BY {', '.join(dims)}" if dims else ""
    return f"SELECT {', '.join([*dims, *SUMMARY_AGGREGATES])} FROM usage{where}{group}", args


def summary_row(dims: list[str], row: Sequence[Any]) -> dict[str, Any]:
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


# -- rejected usage --------------------------------------------------------------------------------------


def reject_sql(mark: Mark) -> str:
    return (
        f"INSERT INTO usage_rejected ({REJECTED_COLUMNS}) VALUES ({marks(mark, 5)}) ON CONFLICT (request_id) DO NOTHING"
    )


def rejected_values(rejected: RejectedUsage) -> tuple[Any, ...]:
    return (rejected.request_id, rejected.rejected_at, rejected.key_id, rejected.error, rejected.record)


def rejected_query(limit: int | None) -> str:
    sql = f"SELECT {REJECTED_COLUMNS} FROM usage_rejected ORDER BY rejected_at, request_id"
    return sql if limit is None else f"{sql} LIMIT {int(limit)}"


def rejected_from_row(row: Sequence[Any]) -> RejectedUsage:
    return RejectedUsage(request_id=row[0], rejected_at=row[1], key_id=row[2], error=row[3], record=row[4])


# -- stored responses ------------------------------------------------------------------------------------

RESPONSE_COLUMNS = "id, key_id, created_at, expires_at, response, input_items, conversation"
RESPONSE_COLUMN_COUNT = RESPONSE_COLUMNS.count(",") + 1


def put_response_sql(mark: Mark, same_owner: str) -> str:
    """Insert a stored response, or replace the row with its id when the owner is the same (``same_owner``: the
    dialect's NULL-safe equality of ``responses.key_id`` and ``excluded.key_id``); another owner's row stays."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in RESPONSE_COLUMNS.split(", ")[2:])
    return (
        f"INSERT INTO responses ({RESPONSE_COLUMNS}) VALUES ({marks(mark, RESPONSE_COLUMN_COUNT)})"
        f" ON CONFLICT (id) DO UPDATE SET {updates} WHERE {same_owner}"
    )


def response_values(r: StoredResponse) -> tuple[Any, ...]:
    """The row in RESPONSE_COLUMNS order."""
    return (r.id, r.key_id, r.created_at, r.expires_at, r.response, r.input_items, r.conversation)


def response_from_row(row: Sequence[Any]) -> StoredResponse:
    return StoredResponse(
        id=row[0],
        key_id=row[1],
        created_at=row[2],
        expires_at=row[3],
        response=bytes(row[4]),
        input_items=bytes(row[5]),
        conversation=bytes(row[6]),
    )


def get_response_sql(mark: Mark) -> str:
    """The row with an id (whoever owns it: the caller checks with ``responses.visible_to``)."""
    return f"SELECT {RESPONSE_COLUMNS} FROM responses WHERE id = {mark(1)}"


def delete_response(response_id: str, key_id: str | None, now: float, mark: Mark) -> tuple[str, list[Any]]:
    """Delete the row with an id if ``key_id`` owns it and it has not expired at ``now``."""
    if key_id is None:
        return f"DELETE FROM responses WHERE id = {mark(1)} AND key_id IS NULL AND expires_at > {mark(2)}", [
            response_id,
            now,
        ]
    sql = f"DELETE FROM responses WHERE id = {mark(1)} AND key_id = {mark(2)} AND expires_at > {mark(3)}"
    return sql, [response_id, key_id, now]


def sweep_responses_sql(mark: Mark) -> str:
    """Delete at most ``mark(2)`` rows expired at ``mark(1)`` (oldest first, through the expiry index)."""
    return (
        f"DELETE FROM responses WHERE id IN (SELECT id FROM responses WHERE expires_at <= {mark(1)}"
        f" ORDER BY expires_at LIMIT {mark(2)})"
    )
