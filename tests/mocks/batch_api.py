"""The providers' own batch APIs, for the OpenAI and Anthropic mocks: OpenAI's ``/v1/files`` (multipart upload,
content) and ``/v1/batches`` (create, retrieve, list, cancel), Anthropic's ``/v1/messages/batches`` (create, retrieve,
``results``), in their real wire formats. A batch runs each of its requests against the mock's own endpoint
(an HTTP call to itself, so every reply is the mock's usual one) and ends once they all answered; until then
a retrieve shows it in progress."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import aiohttp
from aiohttp import web

from tests.mocks.server import MockState, RecordedRequest


def _record(state: MockState, request: web.Request, body: Any) -> None:
    with state.lock:
        state.requests.append(
            RecordedRequest(path=request.path, query=dict(request.query), headers=dict(request.headers), body=body)
        )


def _openai_error(status: int, message: str) -> web.Response:
    err = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return web.json_response(err, status=status)


class OpenAIBatches:
    def __init__(self, state: MockState) -> None:
        self.state = state
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/files", self.upload)
        app.router.add_get("/v1/files/{id}/content", self.content)
        app.router.add_post("/v1/batches", self.create)
        app.router.add_get("/v1/batches", self.listed)
        app.router.add_get("/v1/batches/{id}", self.retrieve)
        app.router.add_post("/v1/batches/{id}/cancel", self.cancel)

    async def upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        _record(self.state, request, {"purpose": form.get("purpose")})
        upload = form.get("file")
        if form.get("purpose") != "batch" or not isinstance(upload, web.FileField):
            return _openai_error(400, "purpose must be batch and file must be a file")
        data = upload.file.read()
        file_id = "file-" + secrets.token_hex(12)
        self.files[file_id] = data
        obj = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
               "filename": upload.filename, "purpose": "batch", "status": "processed"}  # fmt: skip
        return web.json_response(obj)

    async def content(self, request: web.Request) -> web.Response:
        _record(self.state, request, None)
        data = self.files.get(request.match_info["id"])
        if data is None:
            return _openai_error(404, f"No such File object: {request.match_info['id']}")
        return web.Response(body=data, content_type="application/octet-stream")

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        _record(self.state, request, body)
        data = self.files.get(body.get("input_file_id", ""))
        if data is None:
            return _openai_error(404, f"No such File object: {body.get('input_file_id')}")
        batch_id = "batch_" + secrets.token_hex(12)
        batch: dict[str, Any] = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "errors": None,
            "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window", "24h"),
            "status": "in_progress", "output_file_id": None, "error_file_id": None, "created_at": int(time.time()),
            "request_counts": {"total": len(data.splitlines()), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"),
        }  # fmt: skip
        self.batches[batch_id] = batch
        headers = {"authorization": request.headers.get("authorization", "")}
        task = asyncio.create_task(self._run(batch, data, f"http://{request.host}", headers))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if self.state.batch_create_delay_s:  # created, but the answer comes too late for the caller
            await asyncio.sleep(self.state.batch_create_delay_s)
        return web.json_response(batch)

    async def listed(self, request: web.Request) -> web.Response:
        """``GET /v1/batches?limit=&after=``: newest first, as OpenAI pages it."""
        _record(self.state, request, None)
        if self.state.batch_list_missing:  # as aiohttp answers a route it does not have
            raise web.HTTPNotFound()
        newest = list(reversed(self.batches.values()))  # dicts keep creation order
        after = request.query.get("after")
        if after is not None:
            ids = [b["id"] for b in newest]
            newest = newest[ids.index(after) + 1 :] if after in ids else []
        limit = int(request.query.get("limit", "20"))
        page = newest[:limit]
        return web.json_response({
            "object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(newest) > limit,
        })  # fmt: skip

    async def _run(self, batch: dict[str, Any], data: bytes, base: str, headers: dict[str, str]) -> None:
        good: list[bytes] = []
        bad: list[bytes] = []
        async with aiohttp.ClientSession() as session:
            for raw in data.splitlines():
                if batch["status"] == "cancelling":  # what has not run is left out of both files
                    break
                line = json.loads(raw)
                async with session.post(base + line["url"], json=line["body"], headers=headers) as resp:
                    reply = await resp.json()
                    out = {"id": "batch_req_" + secrets.token_hex(8), "custom_id": line["custom_id"],
                           "response": {"status_code": resp.status, "request_id": "req_" + secrets.token_hex(8),
                                        "body": reply}, "error": None}  # fmt: skip
                (good if resp.status == 200 else bad).append(json.dumps(out).encode())
        for lines, field in ((good, "output_file_id"), (bad, "error_file_id")):
            if lines:
                file_id = "file-" + secrets.token_hex(12)
                self.files[file_id] = b"\n".join(lines) + b"\n"
                batch[field] = file_id
        batch["request_counts"] = {"total": len(data.splitlines()), "completed": len(good), "failed": len(bad)}
        ended = "cancelled" if batch["status"] == "cancelling" else "completed"
        batch["status"] = ended
        batch[f"{ended}_at"] = int(time.time())

    async def cancel(self, request: web.Request) -> web.Response:
        _record(self.state, request, None)
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _openai_error(404, f"No such Batch object: {request.match_info['id']}")
        if batch["status"] in ("validating", "in_progress"):
            batch["status"] = "cancelling"
            batch["cancelling_at"] = int(time.time())
        return web.json_response(batch)

    async def retrieve(self, request: web.Request) -> web.Response:
        _record(self.state, request, None)
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _openai_error(404, f"No such Batch object: {request.match_info['id']}")
        return web.json_response(batch)


def _anthropic_error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status)


class AnthropicBatches:
    def __init__(self, state: MockState) -> None:
        self.state = state
        self.batches: dict[str, dict[str, Any]] = {}
        self.results: dict[str, bytes] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages/batches", self.create)
        app.router.add_get("/v1/messages/batches/{id}", self.retrieve)
        app.router.add_get("/v1/messages/batches/{id}/results", self.results_of)
        app.router.add_post("/v1/messages/batches/{id}/cancel", self.cancel)

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        _record(self.state, request, body)
        if not request.headers.get("x-api-key"):
            return _anthropic_error(401, "authentication_error", "x-api-key header is required")
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            return _anthropic_error(400, "invalid_request_error", "requests: Field required")
        batch_id = "msgbatch_" + secrets.token_hex(12)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        batch: dict[str, Any] = {
            "id": batch_id, "type": "message_batch", "processing_status": "in_progress",
            "request_counts": {"processing": len(requests), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0},
            "ended_at": None, "created_at": now, "expires_at": now, "archived_at": None,
            "cancel_initiated_at": None, "results_url": None,
        }  # fmt: skip
        self.batches[batch_id] = batch
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("x-api-key", "anthropic-version")}
        task = asyncio.create_task(self._run(batch, requests, f"http://{request.host}", headers))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.json_response(batch)

    async def _run(self, batch: dict[str, Any], requests: list[Any], base: str, headers: dict[str, str]) -> None:
        lines: list[bytes] = []
        counts = batch["request_counts"]
        async with aiohttp.ClientSession() as session:
            for r in requests:
                if batch["processing_status"] == "canceling":
                    counts["canceled"] += 1
                    counts["processing"] -= 1
                    lines.append(json.dumps({"custom_id": r["custom_id"], "result": {"type": "canceled"}}).encode())
                    continue
                async with session.post(base + "/v1/messages", json=r["params"], headers=headers) as resp:
                    reply = await resp.json()
                if resp.status == 200:
                    result: dict[str, Any] = {"type": "succeeded", "message": reply}
                    counts["succeeded"] += 1
                else:
                    result = {"type": "errored", "error": reply}
                    counts["errored"] += 1
                counts["processing"] -= 1
                lines.append(json.dumps({"custom_id": r["custom_id"], "result": result}).encode())
        self.results[batch["id"]] = b"\n".join(lines) + b"\n"
        batch["processing_status"] = "ended"
        batch["ended_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        batch["results_url"] = f"{base}/v1/messages/batches/{batch['id']}/results"

    async def retrieve(self, request: web.Request) -> web.Response:
        _record(self.state, request, None)
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _anthropic_error(404, "not_found_error", "batch not found")
        return web.json_response(batch)

    async def cancel(self, request: web.Request) -> web.Response:
        _record(self.state, request, None)
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _anthropic_error(404, "not_found_error", "batch not found")
        if batch["processing_status"] == "in_progress":
            batch["processing_status"] = "canceling"
            batch["cancel_initiated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return web.json_response(batch)

    async def results_of(self, request: web.Request) -> web.Response:
        _record(self.state, request, None)
        data = self.results.get(request.match_info["id"])
        if data is None:
            return _anthropic_error(404, "not_found_error", "results not available")
        return web.Response(body=data, content_type="application/binary")
