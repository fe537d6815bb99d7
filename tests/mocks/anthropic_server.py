"""A mock Anthropic Messages API (``POST /v1/messages``) speaking the real wire format, scripted with
ScriptedReply: JSON replies, SSE streams (message_start, ping, content_block_* for thinking, text and
tool_use blocks, message_delta, message_stop) and the documented error bodies."""

from __future__ import annotations

import asyncio
import math
import secrets
from typing import Any

import msgspec
from aiohttp import web

from tests.mocks.batch_api import AnthropicBatches
from tests.mocks.script import ScriptedReply, split
from tests.mocks.server import MockState, last_user_text

_STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "stop_sequence": "stop_sequence"}

# https://docs.anthropic.com/en/api/errors
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _request_id() -> str:
    return "req_" + secrets.token_hex(12)


def _error(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    request_id = _request_id()
    body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}
    return web.json_response(body, status=status, headers={"request-id": request_id, **(headers or {})})


def _scripted_error(reply: ScriptedReply, model: str) -> web.Response:
    status = reply.error_status
    assert status is not None
    error_type = _ERROR_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")
    message = reply.error_message
    if status == 404:
        message = f"model: {model}"
    elif status == 529:
        message = "Overloaded"
    headers: dict[str, str] = {}
    if reply.retry_after is not None:
        headers["retry-after"] = str(math.ceil(reply.retry_after))
    elif status == 429:
        headers["retry-after"] = "1"
    if status == 429:
        headers["anthropic-ratelimit-requests-remaining"] = "0"
    return _error(status, error_type, message, headers)


def _usage(reply: ScriptedReply) -> dict[str, Any]:
    if reply.raw_usage is not None:
        return reply.raw_usage
    u = reply.usage
    usage: dict[str, Any] = {
        # Anthropic's input_tokens exclude cache reads and cache writes.
        "input_tokens": u.input - u.cached - u.cache_write,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cached,
        "output_tokens": u.output,
        "service_tier": "standard",
    }
    if u.reasoning:
        usage["output_tokens_details"] = {"thinking_tokens": u.reasoning}
    return usage


def _delta_usage(reply: ScriptedReply) -> dict[str, Any]:
    if reply.raw_usage is not None:
        return reply.raw_usage
    usage: dict[str, Any] = {"output_tokens": reply.usage.output}
    if reply.usage.reasoning:
        usage["output_tokens_details"] = {"thinking_tokens": reply.usage.reasoning}
    return usage


def _stop(reply: ScriptedReply, body: dict[str, Any]) -> tuple[str, str | None]:
    if reply.tool_calls and reply.finish == "stop":
        return "tool_use", None
    reason = _STOP_REASON[reply.finish]
    if reason != "stop_sequence":
        return reason, None
    stops = body.get("stop_sequences") or []
    return reason, reply.stop_sequence or (stops[0] if stops else None)


def _content(reply: ScriptedReply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.reasoning is not None:
        blocks.append({"type": "thinking", "thinking": reply.reasoning, "signature": reply.reasoning_signature})
    if reply.text or not reply.tool_calls:
        blocks.append({"type": "text", "text": reply.text})
    for call in reply.tool_calls:
        args = msgspec.json.decode(call.arguments) if call.arguments else {}
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": args})
    return blocks


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + msgspec.json.encode({"type": name, **data}) + b"\n\n"


def _stream_events(reply: ScriptedReply, message: dict[str, Any], body: dict[str, Any]) -> list[bytes]:
    """The SSE events of a streamed reply, in the order Anthropic sends them."""
    start_usage = {**_usage(reply), "output_tokens": 1}
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    events = [_event("message_start", {"message": start}), _event("ping", {})]
    index = 0

    def block(first: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        events.append(_event("content_block_start", {"index": index, "content_block": first}))
        events.extend(_event("content_block_delta", {"index": index, "delta": d}) for d in deltas)
        events.append(_event("content_block_stop", {"index": index}))
        index += 1

    if reply.reasoning is not None:
        deltas = [{"type": "thinking_delta", "thinking": p} for p in split(reply.reasoning, reply.chunks)]
        deltas.append({"type": "signature_delta", "signature": reply.reasoning_signature})
        block({"type": "thinking", "thinking": "", "signature": ""}, deltas)
    if reply.text or not reply.tool_calls:
        block(
            {"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in split(reply.text, reply.chunks)]
        )
    for call in reply.tool_calls:
        # Anthropic opens every tool input with an empty partial_json.
        deltas = [{"type": "input_json_delta", "partial_json": ""}]
        deltas += [{"type": "input_json_delta", "partial_json": p} for p in split(call.arguments, reply.chunks)]
        block({"type": "tool_use", "id": call.id, "name": call.name, "input": {}}, deltas)
    stop_reason, stop_sequence = _stop(reply, body)
    events.append(
        _event(
            "message_delta",
            {
                "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                "usage": _delta_usage(reply),
            },
        )
    )
    events.append(_event("message_stop", {}))
    return events


def _beta_refusal(body: dict[str, Any], beta_header: str) -> web.Response | None:
    """What the real API refuses without the beta that enables it: a ``role: "system"`` entry in
    ``messages`` (``mid-conversation-system-*``) and ``context_management`` (``context-management-*``)."""
    betas = [b.strip() for b in beta_header.split(",") if b.strip()]
    mid_system = any(b.startswith("mid-conversation-system-") for b in betas)
    for i, m in enumerate(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "system" and not mid_system:
            return _error(400, "invalid_request_error", f"messages.{i}.role: Input should be 'user' or 'assistant'")
    if "context_management" in body and not any(b.startswith("context-management-") for b in betas):
        return _error(400, "invalid_request_error", "context_management: Extra inputs are not permitted")
    return None


# The fields POST /v1/messages/count_tokens accepts; any other (max_tokens, stream, ...) is refused, as
# Anthropic refuses it ("Extra inputs are not permitted").
COUNT_TOKENS_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers", "context_management"}
    | {"output_config", "output_format"}
)


def mock_token_count(body: dict[str, Any]) -> int:
    """The mock's deterministic count: one token per 3 bytes of the counted JSON (so a test can tell the
    upstream's count from any local estimate), plus 7 for the framing."""
    counted = {k: body[k] for k in ("system", "messages", "tools") if k in body}
    return len(msgspec.json.encode(counted)) // 3 + 7


def make_app(state: MockState) -> web.Application:
    async def count_tokens(request: web.Request) -> web.Response:
        body = await state.record(request)
        if not request.headers.get("x-api-key"):
            return _error(401, "authentication_error", "x-api-key header is required")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "Request body must be a JSON object")
        for required in ("model", "messages"):
            if required not in body:
                return _error(400, "invalid_request_error", f"{required}: Field required")
        for key in body:
            if key not in COUNT_TOKENS_FIELDS:
                return _error(400, "invalid_request_error", f"{key}: Extra inputs are not permitted")
        return web.json_response({"input_tokens": mock_token_count(body)}, headers={"request-id": _request_id()})

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await state.record(request)
        if not request.headers.get("x-api-key"):
            return _error(401, "authentication_error", "x-api-key header is required")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "Request body must be a JSON object")
        if "max_tokens" not in body:
            return _error(400, "invalid_request_error", "max_tokens: Field required")
        refused = _beta_refusal(body, request.headers.get("anthropic-beta", ""))
        if refused is not None:
            return refused
        model: str = body.get("model", "")
        reply = state.next_reply("echo: " + last_user_text(body.get("messages", [])))
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)  # slow on purpose: the test scripted a slow upstream
        if reply.error_status is not None:
            return _scripted_error(reply, model)
        request_id = _request_id()
        message: dict[str, Any] = {
            "id": "msg_" + secrets.token_hex(12),
            "type": "message",
            "role": "assistant",
            "model": reply.model or model,
        }
        if not body.get("stream"):
            if reply.malformed:
                return web.Response(
                    body=b'{"id": "msg_broken", "type": "message", "content": [{"type": "te',
                    content_type="application/json",
                    headers={"request-id": request_id},
                )
            stop_reason, stop_sequence = _stop(reply, body)
            out = {
                **message,
                "content": _content(reply),
                "stop_reason": stop_reason,
                "stop_sequence": stop_sequence,
                "usage": _usage(reply),
            }
            return web.json_response(out, headers={"request-id": request_id})

        events = _stream_events(reply, message, body)
        if reply.malformed:
            events.insert(2, b'event: content_block_start\ndata: {"type": "content_block_start", "ind\n\n')
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "request-id": request_id,
            }
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for sent, event in enumerate(events):
            if reply.truncate_after_chunks is not None and sent >= reply.truncate_after_chunks:
                # Drop the connection without the terminating chunk: the client sees a cut-off body.
                transport = request.transport
                if transport is not None:
                    transport.abort()
                return resp
            await resp.write(event)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    AnthropicBatches(state).routes(app)
    return app
