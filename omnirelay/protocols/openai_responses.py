"""Inbound OpenAI Responses API (``POST /v1/responses``): ``omnirelay.wire.openai_responses`` <-> the core.

Input items become canonical messages (``openai_responses_input``): ``instructions`` a leading system message, a
run of ``reasoning`` / assistant ``message`` / ``function_call`` items one assistant message (the shape every
upstream expects), ``function_call_output`` a tool message. The answer becomes output items in the order the model
produced them: reasoning (its text as the summary, Anthropic's signature as ``encrypted_content``), the message,
the function calls; streamed by ``openai_responses_stream``. Stored responses and ``previous_response_id`` are
the protocol's hooks (``openai_responses_store``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from omnirelay.core.errors import ErrorKind, GatewayError
from omnirelay.core.ids import new_id, now
from omnirelay.core.types import ChatRequest, ChatResponse, Citation, Message
from omnirelay.protocols.base import InboundProtocol, RequestHooks, StreamEncoder, check_nesting, decode_openai_body
from omnirelay.protocols.openai_responses_input import NAME, parse, template_of
from omnirelay.protocols.openai_responses_store import ResponsesHooks
from omnirelay.protocols.openai_responses_stream import ResponsesStreamEncoder, ResponseTemplate, status_of, usage_of
from omnirelay.wire import openai_responses as wire

_encoder = msgspec.json.Encoder()

_ERROR_TYPES: dict[ErrorKind, tuple[str, str | None]] = {
    "invalid_request": ("invalid_request_error", None),
    "authentication": ("authentication_error", "invalid_api_key"),
    "permission": ("permission_error", None),
    "not_found": ("invalid_request_error", "not_found"),
    "too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit": ("rate_limit_error", "rate_limit_exceeded"),
    "quota": ("insufficient_quota", "insufficient_quota"),
    "upstream": ("upstream_error", None),
    "overloaded": ("server_error", "overloaded"),
    "timeout": ("timeout", "timeout"),
    "internal": ("server_error", None),
}


def error_detail(err: GatewayError) -> wire.ErrorDetail:
    err_type, default_code = _ERROR_TYPES.get(err.kind, ("server_error", None))
    return wire.ErrorDetail(message=err.message, type=err_type, param=err.param, code=err.code or default_code)


# -- response ---------------------------------------------------------------------------------------------------


def annotation(c: Citation) -> wire.UrlCitation:
    return wire.UrlCitation(start_index=c.start_index, end_index=c.end_index, url=c.url, title=c.title)


def output_items(msg: Message, item_status: str, tpl: ResponseTemplate) -> list[wire.OutputItem]:
    status: Any = item_status
    items: list[wire.OutputItem] = []
    for part in msg.reasoning:
        if part.text or part.signature:
            summary = [wire.SummaryText(text=part.text)] if part.text else []
            items.append(wire.ReasoningItem(id=new_id("rs_"), summary=summary, encrypted_content=part.signature))
    text = msg.text()
    if text or not msg.tool_calls:
        content = [wire.OutputText(text=text, annotations=[annotation(c) for c in msg.citations])]
        items.append(wire.OutputMessage(id=new_id("msg_"), status=status, content=content))
    for call in msg.tool_calls:
        items.append(
            tpl.function_call(
                item_id=new_id("fc_"), call_id=call.id, name=call.name, arguments=call.arguments, status=status
            )
        )
    return items


class OpenAIResponsesProtocol(InboundProtocol):
    name: ClassVar[str] = NAME
    paths: ClassVar[tuple[str, ...]] = ("/v1/responses", "/responses")

    def __init__(self, hooks: RequestHooks | None = None) -> None:
        self.hooks = hooks

    def parse_request(self, body: bytes, headers: Mapping[str, str]) -> ChatRequest:
        req = decode_openai_body(parse, body)
        check_nesting(req)
        return req

    def render_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        tpl = template_of(req)
        choice = resp.choices[0] if resp.choices else None
        status, incomplete = status_of(choice.finish_reason) if choice else ("completed", None)
        output = (
            output_items(choice.message, "completed" if status == "completed" else "incomplete", tpl) if choice else []
        )
        body = tpl.response(
            response_id=tpl.response_id, model=resp.model or req.model, status=status, output=output, created_at=now()
        )
        body.incomplete_details = incomplete
        body.usage = usage_of(resp.usage, resp.cost)
        body.cost = resp.cost
        return _encoder.encode(body)

    def stream_encoder(self, req: ChatRequest) -> StreamEncoder:
        return ResponsesStreamEncoder(req.model, template_of(req))

    def render_error(self, err: GatewayError) -> bytes:
        return _encoder.encode(wire.ErrorResponse(error=error_detail(err)))


PROTOCOL = OpenAIResponsesProtocol(ResponsesHooks())
