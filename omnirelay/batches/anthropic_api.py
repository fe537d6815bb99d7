"""Anthropic's Message Batches API: ``/v1/messages/batches`` (create, list with before_id/after_id/limit),
``/{id}`` (retrieve, delete), ``/{id}/cancel`` and ``/{id}/results`` (JSONL, one line per request, any
order: match on ``custom_id``), errors in Anthropic's shape. The batches run on the same job table and runner
as OpenAI's, over any routed model. ``processing_status`` folds OpenAI's statuses: in_progress until it ends,
canceling while a cancel settles, then ended."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import msgspec

from omnirelay.batches.create import BatchCreator, Entry
from omnirelay.batches.finalize import anthropic_results
from omnirelay.batches.targets import MESSAGES
from omnirelay.core.batches import BatchJob, BatchStore
from omnirelay.core.errors import GatewayError, invalid
from omnirelay.pipeline.gate import Gate, authenticated, bearer_token
from omnirelay.protocols.anthropic_messages import PROTOCOL as ANTHROPIC
from omnirelay.web.exchange import Exchange
from omnirelay.web.routes import Endpoint, Mount

PREFIX = "/v1/messages/batches"
MAX_LIMIT = 1000
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_encoder = msgspec.json.Encoder()


def _rfc3339(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")


def processing_status(j: BatchJob) -> str:
    if j.ended:
        return "ended"
    return "canceling" if j.status == "cancelling" else "in_progress"


def base_url(exchange: Exchange) -> str:
    headers = exchange.headers
    scheme = headers.get("x-forwarded-proto", "http").split(",")[0].strip() or "http"
    return f"{scheme}://{headers.get('host', '127.0.0.1')}"


def batch_object(j: BatchJob, base: str) -> dict[str, Any]:
    c = j.counts
    ended_at = j.completed_at or j.cancelled_at or j.expired_at or j.failed_at
    return {
        "id": j.id,
        "type": "message_batch",
        "processing_status": processing_status(j),
        "request_counts": {
            "processing": c.processing,
            "succeeded": c.succeeded,
            "errored": c.errored,
            "canceled": c.canceled,
            "expired": c.expired,
        },
        "ended_at": _rfc3339(ended_at),
        "created_at": _rfc3339(j.created_at),
        "expires_at": _rfc3339(j.expires_at),
        "archived_at": None,
        "cancel_initiated_at": _rfc3339(j.cancelling_at),
        "results_url": f"{base}{PREFIX}/{j.id}/results" if j.ended else None,
    }


def _not_found(batch_id: str) -> GatewayError:
    return GatewayError("not_found", f"message batch {batch_id!r} not found")


def _entries(body: Any) -> list[Entry]:
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list) or not body["requests"]:
        raise invalid("requests: a non-empty list of {custom_id, params} is required", param="requests")
    seen: set[str] = set()
    out = []
    for i, r in enumerate(body["requests"]):
        where = f"requests[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("params"), dict):
            raise invalid(f"{where}: an object with custom_id and params is required", param=where)
        cid = r.get("custom_id")
        if not isinstance(cid, str) or not CUSTOM_ID.match(cid):
            raise invalid(f"{where}.custom_id must be 1-64 letters, digits, '_' or '-'", param=f"{where}.custom_id")
        if cid in seen:
            raise invalid(f"{where}.custom_id {cid!r} is not unique", param=f"{where}.custom_id")
        seen.add(cid)
        out.append(Entry(cid, _encoder.encode(r["params"]), f"{where}.params"))
    return out


class AnthropicBatchesApi:
    def __init__(self, batches: BatchStore, gate: Gate, creator: BatchCreator, max_body: int) -> None:
        self.batches = batches
        self.gate = gate
        self.creator = creator
        self.max_body = max_body

    def mount(self) -> Mount:
        return Mount(
            "",
            [
                Endpoint("POST", PREFIX, self.create),
                Endpoint("GET", PREFIX, self.list_batches),
                Endpoint("GET", PREFIX + "/*", self.retrieve),
                Endpoint("POST", PREFIX + "/*", self.cancel),
                Endpoint("DELETE", PREFIX + "/*", self.delete),
            ],
            ANTHROPIC.render_error,
        )

    async def _caller(self, exchange: Exchange) -> str | None:
        return (await authenticated(self.gate, bearer_token(exchange.headers))).key_id

    async def _own(self, batch_id: str, key_id: str | None) -> BatchJob:
        job = await self.batches.get(batch_id, key_id)
        if job is None or job.api != "anthropic":
            raise _not_found(batch_id)
        return job

    async def create(self, exchange: Exchange) -> None:
        admission = await authenticated(self.gate, bearer_token(exchange.headers))
        try:
            body = msgspec.json.decode(await exchange.body(self.max_body))
        except msgspec.DecodeError:
            raise invalid("the request body is not valid JSON") from None
        job = await self.creator.create(admission, "anthropic", MESSAGES, _entries(body))
        await exchange.respond(200, _encoder.encode(batch_object(job, base_url(exchange))))

    async def list_batches(self, exchange: Exchange) -> None:
        key_id = await self._caller(exchange)
        q = parse_qs(exchange.query_string)
        text = q.get("limit", ["20"])[-1].strip()
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIMIT):
            raise invalid(f"limit must be an integer between 1 and {MAX_LIMIT}", param="limit")
        limit = int(text)
        after = q.get("after_id", [None])[-1] or None
        before = q.get("before_id", [None])[-1] or None
        found = await self.batches.page(key_id, "anthropic", after=after, before=before, limit=limit + 1)
        has_more = len(found) > limit
        found = found[1:] if before is not None and has_more else found[:limit]
        base = base_url(exchange)
        data = [batch_object(j, base) for j in found]
        page = {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        await exchange.respond(200, _encoder.encode(page))

    async def retrieve(self, exchange: Exchange) -> None:
        key_id = await self._caller(exchange)
        batch_id, _, tail = exchange.path.rstrip("/").removeprefix(PREFIX + "/").partition("/")
        if tail not in ("", "results"):
            raise GatewayError("not_found", f"no route for GET {exchange.path}", code="unknown_url")
        job = await self._own(batch_id, key_id)
        if tail == "":
            await exchange.respond(200, _encoder.encode(batch_object(job, base_url(exchange))))
            return
        if not job.ended:
            raise invalid(f"message batch {batch_id} has not ended yet: its results are not available")
        results = anthropic_results(await self.batches.done_items(batch_id))
        await exchange.respond(200, results, content_type="application/x-jsonl")

    async def cancel(self, exchange: Exchange) -> None:
        key_id = await self._caller(exchange)
        batch_id, _, tail = exchange.path.rstrip("/").removeprefix(PREFIX + "/").partition("/")
        if tail != "cancel":
            raise GatewayError("not_found", f"no route for POST {exchange.path}", code="unknown_url")
        await self._own(batch_id, key_id)
        job = await self.batches.cancel(batch_id, key_id, time.time())
        assert job is not None
        self.creator.notify()
        await exchange.respond(200, _encoder.encode(batch_object(job, base_url(exchange))))

    async def delete(self, exchange: Exchange) -> None:
        key_id = await self._caller(exchange)
        batch_id = exchange.path.rstrip("/").removeprefix(PREFIX + "/")
        job = await self._own(batch_id, key_id)
        if not job.ended:
            raise invalid(f"message batch {batch_id} is still processing: cancel it and wait until it has ended")
        await self.batches.delete(batch_id, key_id)
        await exchange.respond(200, _encoder.encode({"id": batch_id, "type": "message_batch_deleted"}))
