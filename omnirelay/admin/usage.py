"""``/admin/usage``: the usage records.

  GET    /admin/usage                ?since&until&key&model&limit&format=json|csv -> records
  GET    /admin/usage/summary        ?since&until&key&model&by=key_id,model_requested -> totals
  GET    /admin/usage/rejected       ?limit -> records the database could not store (see state/usage.py)

Times are unix seconds, ISO 8601 (``2027-01-01``, ``2027-01-01T12:00:00Z``) or relative (``90s``, ``15m``,
``24h``, ``7d`` ago). Each query first flushes this replica's pending records, so what it settled is visible.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from omnirelay.admin.common import query, query_limit, send_json
from omnirelay.state.fields import checked_time, dimensions, text_without_nul
from omnirelay.state.gate import KeyGate
from omnirelay.state.store import USAGE_COLUMNS, UsageFilter
from omnirelay.web.exchange import Exchange
from omnirelay.web.routes import Endpoint


def usage_csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    columns = [c for c in USAGE_COLUMNS if c != "cost_units"] + ["cost"]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue().encode()


def usage_filter(q: dict[str, str]) -> UsageFilter:
    key_id = q.get("key") or q.get("key_id")
    model = q.get("model")
    return UsageFilter(
        since=checked_time(q["since"], "since") if "since" in q else None,
        until=checked_time(q["until"], "until") if "until" in q else None,
        key_id=None if key_id is None else text_without_nul(key_id, "key"),
        model=None if model is None else text_without_nul(model, "model"),
        limit=query_limit(q),
    )


class UsageApi:
    def __init__(self, gate: KeyGate) -> None:
        self.gate = gate
        self.store = gate.store

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", "/usage", self.usage),
            Endpoint("GET", "/usage/summary", self.usage_summary),
            Endpoint("GET", "/usage/rejected", self.usage_rejected),
        ]

    async def usage(self, request: Exchange) -> None:
        q = query(request)
        flt = usage_filter(q)
        await self.gate.writer.flush()  # this replica's settled records become visible at once
        rows = [r.public() for r in await self.store.query_usage(flt)]
        if q.get("format") == "csv":
            await request.respond(200, usage_csv(rows), content_type="text/csv; charset=utf-8")
            return
        await send_json(request, 200, {"data": rows})

    async def usage_summary(self, request: Exchange) -> None:
        q = query(request)
        flt = usage_filter(q)
        await self.gate.writer.flush()
        by = dimensions(q.get("by", "key_id,model_requested"))
        await send_json(request, 200, {"data": await self.store.summarize_usage(flt, by)})

    async def usage_rejected(self, request: Exchange) -> None:
        limit = query_limit(query(request))
        await self.gate.writer.flush()
        rows = [r.public() for r in await self.store.query_rejected(limit)]
        await send_json(request, 200, {"data": rows})
