"""The usage records as the console reads them: a user's own (through their keys) or everyone's, newest first
with a keyset cursor, or as points for charts and percentiles (aggregated by the caller)."""

from __future__ import annotations

from typing import Any

import msgspec

from omnirelay.state.accounts_sql import Row, Runner

MAX_POINTS = 200_000  # a chart's rows at most; a wider range is refused by the caller's bucket limit first


class RequestFilter(msgspec.Struct, kw_only=True):
    owner_user_id: str | None = None  # None: every record (an admin's ?all=1)
    since: float | None = None
    until: float | None = None
    key_id: str | None = None
    model: str | None = None  # model_requested or model_used
    status: str | None = None  # "200", "ok" (< 400), "error" (>= 400)
    channel: str | None = None  # an upstream name, or upstream/model
    before: tuple[float, str] | None = None  # the cursor: (created_at, request_id) of the last row seen
    request_id: str | None = None


REQUEST_COLUMNS = (
    "u.request_id, u.created_at, u.key_id, k.name, u.model_requested, u.model_used, u.upstream, u.status,"
    " u.cost_units, u.latency_ms, u.ttft_ms, u.attempts, u.input_tokens, u.output_tokens, u.stream"
)
POINT_COLUMNS = (
    "u.created_at, u.key_id, k.name, u.model_requested, u.cost_units, u.input_tokens, u.output_tokens,"
    " u.latency_ms, u.ttft_ms"
)


def _where(flt: RequestFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if flt.owner_user_id is not None:
        clauses.append("k.owner_user_id = ?")
        args.append(flt.owner_user_id)
    if flt.since is not None:
        clauses.append("u.created_at >= ?")
        args.append(flt.since)
    if flt.until is not None:
        clauses.append("u.created_at < ?")
        args.append(flt.until)
    if flt.key_id is not None:
        clauses.append("u.key_id = ?")
        args.append(flt.key_id)
    if flt.model is not None:
        clauses.append("(u.model_requested = ? OR u.model_used = ?)")
        args += [flt.model, flt.model]
    if flt.status == "ok":
        clauses.append("u.status < 400")
    elif flt.status == "error":
        clauses.append("u.status >= 400")
    elif flt.status is not None:
        clauses.append("u.status = ?")
        args.append(int(flt.status))
    if flt.channel is not None:
        upstream, sep, model = flt.channel.partition("/")
        clauses.append("u.upstream = ?" + (" AND u.model_used = ?" if sep else ""))
        args += [upstream, model] if sep else [upstream]
    if flt.request_id is not None:
        clauses.append("u.request_id = ?")
        args.append(flt.request_id)
    if flt.before is not None:
        clauses.append("(u.created_at < ? OR (u.created_at = ? AND u.request_id < ?))")
        args += [flt.before[0], flt.before[0], flt.before[1]]
    join = "JOIN" if flt.owner_user_id is not None else "LEFT JOIN"
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return f" FROM usage AS u {join} keys AS k ON k.id = u.key_id{where}", args


async def query_requests(db: Runner, flt: RequestFilter, limit: int) -> list[Row]:
    """Rows in REQUEST_COLUMNS order, newest first."""
    source, args = _where(flt)
    sql = f"SELECT {REQUEST_COLUMNS}{source} ORDER BY u.created_at DESC, u.request_id DESC LIMIT {int(limit)}"
    return await db.fetch(sql, *args)


async def usage_points(db: Runner, flt: RequestFilter) -> list[Row]:
    """Rows in POINT_COLUMNS order (at most MAX_POINTS, newest first)."""
    source, args = _where(flt)
    sql = f"SELECT {POINT_COLUMNS}{source} ORDER BY u.created_at DESC LIMIT {MAX_POINTS}"
    return await db.fetch(sql, *args)
