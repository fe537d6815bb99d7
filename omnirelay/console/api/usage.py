"""Usage: charts, percentiles and the request log, of the caller's own keys (an admin's ``?all=1``: everyone's).

  GET /usage/series?bucket=hour|day&since&until&by=model|key
  GET /usage/latency?since&until&by=model
  GET /requests?limit&cursor&since&until&key_id&model&status&channel     (and /requests.csv, same filters)
  GET /requests/{request_id}   (beyond the contract: one record; another user's answers 404)

Each read first writes this replica's settled records, so a request just answered is in it.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections import defaultdict
from typing import Any

from omnirelay.admin.common import query
from omnirelay.console.common import (
    ApiRoute,
    Caller,
    csv_cell,
    decode_cursor,
    encode_cursor,
    not_found,
    page_limit,
    path_id,
    send,
    send_csv,
    usd,
)
from omnirelay.console.context import ConsoleContext
from omnirelay.core.errors import GatewayError
from omnirelay.state.accounts_sql import Row
from omnirelay.state.accounts_usage import RequestFilter, query_requests, usage_points
from omnirelay.state.fields import bad, checked_time
from omnirelay.web.exchange import Exchange

BUCKETS = {"hour": 3600, "day": 86400}
MAX_BUCKETS = 2000
REQUEST_FIELDS = (
    "request_id",
    "created_at",
    "key_id",
    "key_name",
    "model_requested",
    "model_used",
    "channel",
    "status",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "attempts",
    "input_tokens",
    "output_tokens",
    "stream",
)
CSV_EXPORT_LIMIT = 100_000


def percentiles(values: list[float]) -> dict[str, float]:
    """Nearest-rank p50/p90/p99."""
    ordered = sorted(values)
    n = len(ordered)
    return {f"p{p}": round(ordered[max(0, math.ceil(p / 100 * n) - 1)], 3) for p in (50, 90, 99)}


def request_view(row: Row) -> dict[str, Any]:
    upstream, model_used = row[6], row[5]
    return {
        "request_id": row[0],
        "created_at": row[1],
        "key_id": row[2],
        "key_name": row[3],
        "model_requested": row[4],
        "model_used": model_used,
        "channel": f"{upstream}/{model_used}" if upstream else None,
        "status": int(row[7]),
        "cost_usd": usd(int(row[8])),
        "latency_ms": row[9],
        "ttft_ms": row[10],
        "attempts": int(row[11]),
        "input_tokens": int(row[12]),
        "output_tokens": int(row[13]),
        "stream": bool(row[14]),
    }


class UsageApi:
    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx

    def _filter(self, caller: Caller, q: dict[str, str], default_span_s: float) -> RequestFilter:
        assert caller.user is not None
        everyone = q.get("all") in ("1", "true")
        if everyone and caller.user.role != "admin":
            raise GatewayError("permission", "all=1 needs an administrator.", code="admin_required")
        until = checked_time(q["until"], "until") if q.get("until") else time.time()
        since = checked_time(q["since"], "since") if q.get("since") else until - default_span_s
        status = q.get("status") or None
        if status is not None and status not in ("ok", "error") and not (status.isdigit() and len(status) == 3):
            raise bad("status", "status must be an HTTP status, ok or error")
        return RequestFilter(
            owner_user_id=None if everyone else caller.user.id,
            since=since,
            until=until,
            key_id=_text(q, "key_id"),
            model=_text(q, "model"),
            status=status,
            channel=_text(q, "channel"),
        )

    async def series(self, request: Exchange, caller: Caller) -> None:
        q = query(request)
        bucket = q.get("bucket", "hour")
        by = q.get("by", "model")
        if bucket not in BUCKETS:
            raise bad("bucket", "bucket must be hour or day")
        if by not in ("model", "key"):
            raise bad("by", "by must be model or key")
        size = BUCKETS[bucket]
        flt = self._filter(caller, q, 86400.0 if bucket == "hour" else 30 * 86400.0)
        assert flt.since is not None and flt.until is not None
        first = math.floor(flt.since / size) * size
        count = max(1, math.ceil((flt.until - first) / size))
        if count > MAX_BUCKETS:
            raise bad("since", f"at most {MAX_BUCKETS} buckets: narrow since..until or use bucket=day")
        await self.ctx.gate.writer.flush()
        names: dict[str, str] = {}
        spend: dict[str, list[int]] = defaultdict(lambda: [0] * count)
        tokens: dict[str, list[int]] = defaultdict(lambda: [0] * count)
        requests: dict[str, list[int]] = defaultdict(lambda: [0] * count)
        for row in await usage_points(self.ctx.accounts.db, flt):
            i = min(count - 1, int((row[0] - first) // size))
            series = (row[1] or "(none)") if by == "key" else row[3]
            names.setdefault(series, (row[2] or row[1] or "(no key)") if by == "key" else row[3])
            spend[series][i] += int(row[4])
            tokens[series][i] += int(row[5]) + int(row[6])
            requests[series][i] += 1
        body = {
            "bucket": bucket,
            "buckets": [first + i * size for i in range(count)],
            "series": [
                {
                    "name": names[s],
                    "id": s,
                    "spend_usd": [usd(u) for u in spend[s]],
                    "tokens": tokens[s],
                    "requests": requests[s],
                }
                for s in sorted(names, key=lambda s: names[s])
            ],
        }
        await send(request, 200, body)

    async def latency(self, request: Exchange, caller: Caller) -> None:
        q = query(request)
        if q.get("by", "model") != "model":
            raise bad("by", "by must be model")
        flt = self._filter(caller, q, 86400.0)
        await self.ctx.gate.writer.flush()
        latency: dict[str, list[float]] = defaultdict(list)
        ttft: dict[str, list[float]] = defaultdict(list)
        for row in await usage_points(self.ctx.accounts.db, flt):
            latency[row[3]].append(float(row[7]))
            if row[8] is not None:
                ttft[row[3]].append(float(row[8]))
        data = [
            {
                "name": name,
                "requests": len(values),
                "latency_ms": percentiles(values),
                "ttft_ms": percentiles(ttft[name]) if ttft[name] else None,
            }
            for name, values in sorted(latency.items())
        ]
        await send(request, 200, {"data": data})

    async def requests(self, request: Exchange, caller: Caller) -> None:
        q = query(request)
        flt = self._filter(caller, q, 3650 * 86400.0)
        cursor = decode_cursor(q.get("cursor"))
        if cursor is not None:
            if len(cursor) != 2 or not isinstance(cursor[0], int | float) or not isinstance(cursor[1], str):
                raise bad("cursor", "cursor is not one this API returned")
            flt.before = (float(cursor[0]), cursor[1])
        limit = page_limit(q)
        await self.ctx.gate.writer.flush()
        rows = await query_requests(self.ctx.accounts.db, flt, limit + 1)
        data = [request_view(r) for r in rows[:limit]]
        more = len(rows) > limit
        next_cursor = encode_cursor(data[-1]["created_at"], data[-1]["request_id"]) if more and data else None
        await send(request, 200, {"data": data, "next_cursor": next_cursor})

    async def one_request(self, request: Exchange, caller: Caller) -> None:
        """One record by request id: the caller's own (an admin's: any), else 404 as for an unknown id."""
        assert caller.user is not None
        request_id, action = path_id(request, "/requests/")
        if action:
            raise not_found(f"no route for {request.method} {request.path}")
        owner = None if caller.user.role == "admin" else caller.user.id
        await self.ctx.gate.writer.flush()
        rows = await query_requests(self.ctx.accounts.db, RequestFilter(owner_user_id=owner, request_id=request_id), 1)
        if not rows:
            raise not_found(f"no request {request_id!r}")
        await send(request, 200, request_view(rows[0]))

    async def requests_csv(self, request: Exchange, caller: Caller) -> None:
        flt = self._filter(caller, query(request), 3650 * 86400.0)
        await self.ctx.gate.writer.flush()
        rows = await query_requests(self.ctx.accounts.db, flt, CSV_EXPORT_LIMIT)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=REQUEST_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: csv_cell(v) for k, v in request_view(row).items()})
        await send_csv(request, out.getvalue(), "requests.csv")

    def routes(self) -> list[ApiRoute]:
        return [
            ("GET", "/usage/series", self.series),
            ("GET", "/usage/latency", self.latency),
            ("GET", "/requests", self.requests),
            ("GET", "/requests.csv", self.requests_csv),
            ("GET", "/requests/*", self.one_request),
        ]


def _text(q: dict[str, str], name: str) -> str | None:
    value = q.get(name) or None
    if value is not None and ("\x00" in value or len(value) > 500):
        raise bad(name, f"{name} is not a valid value")
    return value
