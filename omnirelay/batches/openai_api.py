"""OpenAI's Files and Batch APIs: ``/v1/files`` (upload, list, retrieve, content, delete) and ``/v1/batches``
(create, retrieve, list, cancel), errors in OpenAI's shape. Every object read by id belongs to the calling key;
another key's is a 404 like a missing one."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs

import msgspec

from omnirelay.batches.create import BatchCreator, Entry, check_metadata
from omnirelay.batches.targets import OPENAI_ENDPOINTS
from omnirelay.batches.uploads import parse_form, read_batch_input
from omnirelay.config import BatchesConfig
from omnirelay.core.batches import BatchJob, BatchStore, FileStore, StoredFile
from omnirelay.core.errors import GatewayError, invalid
from omnirelay.core.ids import new_id
from omnirelay.pipeline.gate import Gate, authenticated, bearer_token
from omnirelay.protocols.openai_chat import PROTOCOL as OPENAI
from omnirelay.web.exchange import Exchange
from omnirelay.web.routes import Endpoint, Mount

MAX_LIMIT = 100
_encoder = msgspec.json.Encoder()


def _ts(value: float | None) -> int | None:
    return None if value is None else int(value)


def file_object(f: StoredFile) -> dict[str, Any]:
    return {
        "id": f.id,
        "object": "file",
        "bytes": f.bytes,
        "created_at": int(f.created_at),
        "filename": f.filename,
        "purpose": f.purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def batch_object(j: BatchJob) -> dict[str, Any]:
    c = j.counts
    return {
        "id": j.id,
        "object": "batch",
        "endpoint": j.endpoint,
        "model": j.models[0] if len(j.models) == 1 else None,
        "errors": None,
        "input_file_id": j.input_file_id or "",
        "completion_window": j.completion_window,
        "status": j.status,
        "output_file_id": j.output_file_id,
        "error_file_id": j.error_file_id,
        "created_at": int(j.created_at),
        "in_progress_at": _ts(j.in_progress_at),
        "expires_at": _ts(j.expires_at),
        "finalizing_at": _ts(j.finalizing_at),
        "completed_at": _ts(j.completed_at),
        "failed_at": _ts(j.failed_at),
        "expired_at": _ts(j.expired_at),
        "cancelling_at": _ts(j.cancelling_at),
        "cancelled_at": _ts(j.cancelled_at),
        "request_counts": {"total": c.total, "completed": c.succeeded, "failed": c.errored},
        "metadata": j.metadata,
    }


def _not_found(kind: str, object_id: str) -> GatewayError:
    return GatewayError("not_found", f"No such {kind}: '{object_id}'", param="id")


def page_params(query_string: str) -> tuple[str | None, int]:
    q = parse_qs(query_string)
    after = q.get("after", [None])[-1] or None
    text = q.get("limit", ["20"])[-1].strip()
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_LIMIT):
        raise invalid(f"limit must be an integer between 1 and {MAX_LIMIT}", param="limit")
    return after, int(text)


def _page(data: list[dict[str, Any]], has_more: bool) -> bytes:
    first = data[0]["id"] if data else None
    last = data[-1]["id"] if data else None
    return _encoder.encode({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more})


class OpenAIBatchesApi:
    def __init__(
        self, files: FileStore, batches: BatchStore, gate: Gate, creator: BatchCreator, settings: BatchesConfig
    ) -> None:
        self.files = files
        self.batches = batches
        self.gate = gate
        self.creator = creator
        self.settings = settings

    def mount(self) -> Mount:
        return Mount(
            "",
            [
                Endpoint("POST", "/v1/files", self.upload),
                Endpoint("GET", "/v1/files", self.list_files),
                Endpoint("GET", "/v1/files/*", self.file_route),
                Endpoint("DELETE", "/v1/files/*", self.delete_file),
                Endpoint("POST", "/v1/batches", self.create),
                Endpoint("GET", "/v1/batches", self.list_batches),
                Endpoint("GET", "/v1/batches/*", self.retrieve),
                Endpoint("POST", "/v1/batches/*", self.cancel),
            ],
            OPENAI.render_error,
        )

    async def _caller(self, exchange: Exchange) -> str | None:
        return (await authenticated(self.gate, bearer_token(exchange.headers))).key_id

    # -- files -------------------------------------------------------------------------------------------

    async def upload(self, exchange: Exchange) -> None:
        key_id = await self._caller(exchange)
        limit = self.settings.max_file_bytes
        try:
            body = await exchange.body(limit + 64 * 1024)  # room for the form's own headers
        except GatewayError as err:
            if err.status == 413:
                err.message = f"the file is larger than the {limit} bytes a batch file may hold"
            raise
        form = parse_form(exchange.headers.get("content-type", ""), body)
        purpose = form.get("purpose")
        if purpose is None or purpose.data.decode("utf-8", "replace") != "batch":
            raise invalid("purpose must be 'batch' (the only purpose this gateway stores)", param="purpose")
        upload = form.get("file")
        if upload is None:
            raise invalid("the form has no `file` field", param="file")
        if len(upload.data) > limit:
            raise GatewayError("too_large", f"the file is larger than the {limit} bytes a batch file may hold")
        lines = read_batch_input(upload.data, self.settings.max_requests)
        f = StoredFile(
            id=new_id("file-"),
            key_id=key_id,
            purpose="batch",
            filename=(upload.filename or "input.jsonl")[:255],
            bytes=len(upload.data),
            lines=len(lines),
            created_at=time.time(),
            content=upload.data,
        )
        await self.files.put(f)
        await exchange.respond(200, _encoder.encode(file_object(f)))

    async def list_files(self, exchange: Exchange) -> None:
        key_id = await self._caller(exchange)
        after, limit = page_params(exchange.query_string)
        purpose = parse_qs(exchange.query_string).get("purpose", [None])[-1] or None
        found = await self.files.page(key_id, purpose, after, limit + 1)
        await exchange.respond(200, _page([file_object(f) for f in found[:limit]], len(found) > limit))

    async def file_route(self, exchange: Exchange) -> None:
        key_id = await self._caller(exchange)
        rest = exchange.path.rstrip("/").removeprefix("/v1/files/")
        file_id, _, tail = rest.partition("/")
        if tail not in ("", "content"):
            raise GatewayError("not_found", f"no route for GET {exchange.path}", code="unknown_url")
        f = await self.files.get(file_id, key_id, content=tail == "content")
        if f is None:
            raise _not_found("file", file_id)
        if tail == "content":
            await exchange.respond(200, f.content, content_type="application/octet-stream")
        else:
            await exchange.respond(200, _encoder.encode(file_object(f)))

    async def delete_file(self, exchange: Exchange) -> None:
        key_id = await self._caller(exchange)
        file_id = exchange.path.rstrip("/").removeprefix("/v1/files/")
        if not await self.files.delete(file_id, key_id):
            raise _not_found("file", file_id)
        await exchange.respond(200, _encoder.encode({"id": file_id, "object": "file", "deleted": True}))

    # -- batches -----------------------------------------------------------------------------------------

    async def create(self, exchange: Exchange) -> None:
        admission = await authenticated(self.gate, bearer_token(exchange.headers))
        try:
            req = msgspec.json.decode(await exchange.body(1024 * 1024))
        except msgspec.DecodeError:
            raise invalid("the request body is not valid JSON") from None
        if not isinstance(req, dict):
            raise invalid("the request body must be a JSON object")
        endpoint = req.get("endpoint")
        if endpoint not in OPENAI_ENDPOINTS:
            raise invalid(f"endpoint must be one of {', '.join(OPENAI_ENDPOINTS)}", param="endpoint")
        file_id = req.get("input_file_id")
        if not isinstance(file_id, str):
            raise invalid("input_file_id is required", param="input_file_id")
        f = await self.files.get(file_id, admission.key_id, content=True)
        if f is None or f.purpose != "batch":
            raise _not_found("file", file_id)
        lines = read_batch_input(f.content, self.settings.max_requests)
        if lines[0].url != endpoint:
            raise invalid(f"the file's requests are for {lines[0].url}, not {endpoint}", param="endpoint")
        entries = [Entry(line.custom_id, line.body, f"line {n}") for n, line in enumerate(lines, 1)]
        window = req.get("completion_window", "24h")
        metadata = check_metadata(req.get("metadata"))
        job = await self.creator.create(admission, "openai", endpoint, entries, file_id, str(window), metadata)
        await exchange.respond(200, _encoder.encode(batch_object(job)))

    async def retrieve(self, exchange: Exchange) -> None:
        key_id = await self._caller(exchange)
        batch_id = exchange.path.rstrip("/").removeprefix("/v1/batches/")
        job = await self.batches.get(batch_id, key_id)
        if job is None or job.api != "openai":
            raise _not_found("batch", batch_id)
        await exchange.respond(200, _encoder.encode(batch_object(job)))

    async def cancel(self, exchange: Exchange) -> None:
        key_id = await self._caller(exchange)
        batch_id, _, tail = exchange.path.rstrip("/").removeprefix("/v1/batches/").partition("/")
        if tail != "cancel":
            raise GatewayError("not_found", f"no route for POST {exchange.path}", code="unknown_url")
        found = await self.batches.get(batch_id, key_id)
        if found is None or found.api != "openai":
            raise _not_found("batch", batch_id)
        job = await self.batches.cancel(batch_id, key_id, time.time())
        assert job is not None
        self.creator.notify()
        await exchange.respond(200, _encoder.encode(batch_object(job)))

    async def list_batches(self, exchange: Exchange) -> None:
        key_id = await self._caller(exchange)
        after, limit = page_params(exchange.query_string)
        found = await self.batches.page(key_id, "openai", after=after, limit=limit + 1)
        await exchange.respond(200, _page([batch_object(j) for j in found[:limit]], len(found) > limit))
