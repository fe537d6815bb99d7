"""Upstream OpenAI Responses API (``POST /v1/responses``): for models that exist only there (o3-pro, codex
models) and for reasoning summaries, which Chat Completions never returns. Configured as its own upstream
(``provider: openai_responses``), so it applies per channel, and per model through the upstream's ``models``.

Translation choices:

* Canonical messages become input items: system/developer/user messages, an assistant turn as its reasoning
  items, its text as an ``output_text`` message and its calls as ``function_call`` items; tool results become
  ``function_call_output`` items (text only: images in a tool result follow as a user message).
* Nothing is stored upstream (``store: false``; omnirelay keeps stored responses itself), so reasoning comes back
  as ``encrypted_content`` (``include: ["reasoning.encrypted_content"]``), carried as the reasoning part's
  signature and sent back as a ``reasoning`` item on the next turn.
* Reasoning models (``o1``/``o3``/``o4``/``gpt-5``/``codex`` names, or the ``reasoning_models`` option's
  prefixes) are asked for a summary (option ``reasoning_summary``, default ``auto``), which reaches chat callers
  as ``reasoning_content`` and Anthropic callers as thinking blocks.
* A request that came in on ``/v1/responses`` keeps the fields omnirelay does not model (``extra``), and its own
  ``reasoning``/``text`` settings over the translated ones; ``include`` entries are merged, ``store`` stays
  false (omnirelay stores), everything else is sent as the caller wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from omnirelay.core.errors import GatewayError, retry_after_header, upstream_status_error
from omnirelay.core.events import (
    ChoiceEnd,
    ReasoningDelta,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.ids import new_id, now
from omnirelay.core.reasoning import effort_of
from omnirelay.core.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
    ImagePart,
    Message,
    ReasoningPart,
    TextPart,
    ToolCall,
    Usage,
)
from omnirelay.providers.base import CHAT, HttpProvider, StreamParser, UpstreamRequest, openai_error_fields
from omnirelay.wire import openai_responses_reply as wire
from omnirelay.wire.sse import SSEDecoder

if TYPE_CHECKING:
    from omnirelay.config import UpstreamConfig

FAMILY = "openai_responses"
ENCRYPTED_REASONING = "reasoning.encrypted_content"
DEFAULT_REASONING_MODELS = ("o1", "o3", "o4", "gpt-5", "codex")
CHAT_MODELS = ("gpt-5-chat",)  # named like a reasoning model, but not one
SUMMARY_SEPARATOR = "\n\n"
TOOL_ERROR_PREFIX = "Error: "

_encoder = msgspec.json.Encoder()
_response_decoder = msgspec.json.Decoder(wire.ReplyResponse)
_event_decoder = msgspec.json.Decoder(wire.ReplyEvent)


# -- request ----------------------------------------------------------------------------------------------------


def _image(p: ImagePart) -> dict[str, Any]:
    if p.media_type == "application/pdf" and p.data is not None:
        return {"type": "input_file", "filename": "document.pdf", "file_data": f"data:application/pdf;base64,{p.data}"}
    url = p.url if p.url else f"data:{p.media_type or 'image/png'};base64,{p.data or ''}"
    part: dict[str, Any] = {"type": "input_image", "image_url": url}
    if p.detail:
        part["detail"] = p.detail
    return part


def _user_content(m: Message) -> list[dict[str, Any]]:
    return [
        {"type": "input_text", "text": p.text} if isinstance(p, TextPart) else _image(p)
        for p in m.content
        if isinstance(p, TextPart | ImagePart)
    ]


def _assistant_items(m: Message) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for r in m.reasoning:
        # Only an upstream-issued encrypted_content can go back; bare text from another model's turn cannot.
        if r.signature:
            summary = [{"type": "summary_text", "text": r.text}] if r.text else []
            items.append({"type": "reasoning", "summary": summary, "encrypted_content": r.signature})
    text = m.text()
    if text:
        items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]})
    items.extend(
        {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls
    )
    return items


def _tool_items(m: Message) -> list[dict[str, Any]]:
    text = m.text()
    if m.is_error:
        text = TOOL_ERROR_PREFIX + text
    items: list[dict[str, Any]] = [{"type": "function_call_output", "call_id": m.tool_call_id or "", "output": text}]
    media = [_image(p) for p in m.content if isinstance(p, ImagePart)]
    if media:
        label = {"type": "input_text", "text": f"Content returned by tool call {m.tool_call_id or ''}:"}
        items.append({"role": "user", "content": [label, *media]})
    return items


def input_items(messages: list[Message]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "assistant":
            items.extend(_assistant_items(m))
        elif m.role == "tool":
            items.extend(_tool_items(m))
        elif m.role in ("system", "developer"):
            texts = [p.text for p in m.content if isinstance(p, TextPart)]
            items.append({"role": m.role, "content": [{"type": "input_text", "text": t} for t in texts]})
        else:
            items.append({"role": "user", "content": _user_content(m)})
    return items


def _tools(req: ChatRequest) -> list[dict[str, Any]]:
    tools = []
    for t in req.tools:
        tool: dict[str, Any] = {"type": "function", "name": t.name, "parameters": t.parameters or {}}
        if t.description:
            tool["description"] = t.description
        if t.strict is not None:
            tool["strict"] = t.strict
        tools.append(tool)
    return tools


def _text_format(req: ChatRequest) -> dict[str, Any] | None:
    rf = req.response_format
    if rf is None or rf.type == "text":
        return None
    if rf.type == "json_object":
        return {"type": "json_object"}
    fmt: dict[str, Any] = {"type": "json_schema", "name": rf.name or "response", "schema": rf.schema or {}}
    if rf.strict is not None:
        fmt["strict"] = rf.strict
    if rf.description:
        fmt["description"] = rf.description
    return fmt


# -- response ---------------------------------------------------------------------------------------------------


def _usage(u: wire.ReplyUsage | None) -> Usage:
    if u is None:
        return Usage()
    cached = u.input_tokens_details.cached_tokens if u.input_tokens_details else None
    reasoning = u.output_tokens_details.reasoning_tokens if u.output_tokens_details else None
    return Usage(
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cached_tokens=cached or 0,
        reasoning_tokens=reasoning or 0,
    )


def _finish(r: wire.ReplyResponse, has_calls: bool) -> FinishReason:
    if r.status == "incomplete":
        reason = r.incomplete_details.reason if r.incomplete_details else None
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if has_calls else "stop"


def _failure(r: wire.ReplyResponse | None) -> GatewayError:
    err = r.error if r is not None else None
    detail = f"{err.message} ({err.code})" if err is not None and err.code else (err.message if err else "")
    return GatewayError("upstream", f"upstream response failed: {detail or 'no error given'}"[:500])


def _summary(item: wire.ReplyItem) -> str:
    return SUMMARY_SEPARATOR.join(s.text for s in item.summary or () if s.text)


def _item_text(item: wire.ReplyItem) -> str:
    return "".join(c.text if c.type == "output_text" else c.refusal for c in item.content or ())


def message_of(r: wire.ReplyResponse) -> Message:
    msg = Message(role="assistant")
    text: list[str] = []
    for item in r.output:
        if item.type == "reasoning":
            summary = _summary(item)
            if summary or item.encrypted_content:
                msg.reasoning.append(ReasoningPart(text=summary, signature=item.encrypted_content))
        elif item.type == "message":
            text.append(_item_text(item))
        elif item.type == "function_call":
            call_id = item.call_id or item.id or new_id("call_")
            msg.tool_calls.append(ToolCall(id=call_id, name=item.name, arguments=item.arguments or "{}"))
    joined = "".join(text)
    if joined:
        msg.content.append(TextPart(text=joined))
    return msg


class ResponsesStreamParser(StreamParser):
    """Responses SSE events -> canonical events. The stream must end with ``response.completed`` or
    ``response.incomplete``; ``response.failed`` and ``error`` events are upstream failures."""

    def __init__(self, model: str) -> None:
        self.sse = SSEDecoder()
        self.model = model
        self.started = False
        self.done = False
        self.calls: dict[str, int] = {}  # function_call item id -> canonical call index
        self.call_args: dict[str, bool] = {}  # item id -> arguments seen as deltas
        self.reasoning_seen = False

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self.sse.feed(chunk):
            data = ev.data.strip()
            if self.done or not data:
                continue
            try:
                event = _event_decoder.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise GatewayError("upstream", "upstream sent a malformed stream event (not valid JSON)") from None
            self._event(event, out)
        return out

    def _start(self, r: wire.ReplyResponse | None, out: list[StreamEvent]) -> None:
        if not self.started:
            self.started = True
            rid = r.id if r is not None and r.id else new_id("resp_")
            model = r.model if r is not None and r.model else self.model
            out.append(StreamStart(id=rid, model=model, created=r.created_at if r is not None else 0))

    def _event(self, e: wire.ReplyEvent, out: list[StreamEvent]) -> None:
        kind = e.type
        if kind == "error":
            detail = f"{e.message or ''} ({e.code})" if e.code else (e.message or "")
            self._fail(GatewayError("upstream", f"upstream error mid-stream: {detail}"[:500]), out)
            return
        if kind == "response.failed":
            self._fail(_failure(e.response), out)
            return
        self._start(e.response, out)
        if kind == "response.output_text.delta":
            if e.delta:
                out.append(TextDelta(text=e.delta))
        elif kind == "response.reasoning_summary_text.delta":
            if e.delta:
                self.reasoning_seen = True
                out.append(ReasoningDelta(text=e.delta))
        elif kind == "response.reasoning_summary_part.added":
            if self.reasoning_seen:
                out.append(ReasoningDelta(text=SUMMARY_SEPARATOR))
        elif kind == "response.function_call_arguments.delta":
            self._arguments(e, out)
        elif kind == "response.output_item.added" and e.item is not None and e.item.type == "function_call":
            self._call_start(e.item, out)
        elif kind == "response.output_item.done" and e.item is not None:
            self._item_done(e.item, out)
        elif kind in ("response.completed", "response.incomplete"):
            self._end(e.response, out)

    def _fail(self, error: GatewayError, out: list[StreamEvent]) -> None:
        # Reported as an event, not raised, so the content parsed from the same read still reaches the caller.
        self.done = True
        out.append(StreamFailure(error=error))

    def _call_start(self, item: wire.ReplyItem, out: list[StreamEvent]) -> None:
        index = len(self.calls)
        self.calls[item.id] = index
        self.call_args[item.id] = False
        out.append(ToolCallStart(index=index, id=item.call_id or item.id or new_id("call_"), name=item.name))
        if item.arguments:
            self.call_args[item.id] = True
            out.append(ToolCallArgs(index=index, arguments=item.arguments))

    def _arguments(self, e: wire.ReplyEvent, out: list[StreamEvent]) -> None:
        index = self.calls.get(e.item_id)
        if index is None:
            raise GatewayError("upstream", "upstream sent function call arguments for an item it never opened")
        if e.delta:
            self.call_args[e.item_id] = True
            out.append(ToolCallArgs(index=index, arguments=e.delta))

    def _item_done(self, item: wire.ReplyItem, out: list[StreamEvent]) -> None:
        if item.type == "reasoning" and item.encrypted_content:
            out.append(ReasoningDelta(signature=item.encrypted_content))
        elif item.type == "function_call":
            if item.id not in self.calls:
                self._call_start(item, out)
            elif not self.call_args[item.id] and item.arguments:
                # Arguments given only whole, in the item: still the call's arguments.
                self.call_args[item.id] = True
                out.append(ToolCallArgs(index=self.calls[item.id], arguments=item.arguments))

    def _end(self, r: wire.ReplyResponse | None, out: list[StreamEvent]) -> None:
        self.done = True
        if r is None:
            out.append(ChoiceEnd(finish_reason="tool_calls" if self.calls else "stop"))
            return
        out.append(ChoiceEnd(finish_reason=_finish(r, bool(self.calls))))
        if r.usage is not None:
            out.append(UsageReport(usage=_usage(r.usage)))

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not self.done and self.sse.has_partial:
            out = self.feed(b"\n\n")  # a last event without its blank line
        if not self.done:
            raise GatewayError("upstream", "upstream stream ended before response.completed")
        return out


class OpenAIResponsesProvider(HttpProvider):
    family: ClassVar[str] = FAMILY
    capabilities = CHAT

    def __init__(self, upstream: UpstreamConfig) -> None:
        super().__init__(upstream)
        base = upstream.base_url or "https://api.openai.com/v1"
        self.url = base.rstrip("/") + "/responses"
        headers = {"content-type": "application/json"}
        if upstream.api_key:
            headers["authorization"] = f"Bearer {upstream.api_key}"
        for k, v in upstream.headers.items():
            headers[k.lower()] = v
        self.headers = headers
        self.stream_headers = {**headers, "accept": "text/event-stream"}
        options = upstream.options
        summary = options.get("reasoning_summary", "auto")
        if summary not in (None, "auto", "concise", "detailed"):
            raise ValueError(f"upstream {upstream.name!r}: reasoning_summary must be auto, concise, detailed or null")
        self.summary: str | None = summary
        prefixes = options.get("reasoning_models", DEFAULT_REASONING_MODELS)
        if not isinstance(prefixes, list | tuple) or not all(isinstance(p, str) for p in prefixes):
            raise ValueError(f"upstream {upstream.name!r}: reasoning_models must be a list of model name prefixes")
        self.reasoning_models = tuple(prefixes)

    def reasons(self, model: str) -> bool:
        """Whether ``model`` is a reasoning model (asked for a summary and its encrypted reasoning)."""
        return model.startswith(self.reasoning_models) and not model.startswith(CHAT_MODELS)

    def _reasoning(self, req: ChatRequest, model: str) -> dict[str, Any] | None:
        effort = effort_of(req.reasoning)
        reasoning: dict[str, Any] = {}
        if effort is not None:
            reasoning["effort"] = effort
        elif req.reasoning is not None and not req.reasoning.enabled:
            reasoning["effort"] = "minimal"
        if self.summary is not None and self.reasons(model):
            reasoning["summary"] = self.summary
        return reasoning or None

    def build_body(self, req: ChatRequest, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "input": input_items(req.messages), "store": False}
        if req.stream:
            body["stream"] = True
        if req.max_tokens is not None:
            body["max_output_tokens"] = req.max_tokens
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.top_p is not None:
            body["top_p"] = req.top_p
        if req.tools:
            body["tools"] = _tools(req)
            if req.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = req.parallel_tool_calls
        if req.tool_choice is not None:
            tc = req.tool_choice
            body["tool_choice"] = {"type": "function", "name": tc.name or ""} if tc.mode == "tool" else tc.mode
        fmt = _text_format(req)
        if fmt is not None:
            body["text"] = {"format": fmt}
        reasoning = self._reasoning(req, model)
        if reasoning is not None:
            body["reasoning"] = reasoning
        if self.reasons(model):
            body["include"] = [ENCRYPTED_REASONING]
        if req.user is not None:
            body["user"] = req.user
        if req.extra and req.inbound_protocol == FAMILY:
            self._pass_through(req.extra, body)
        return body

    def _pass_through(self, extra: dict[str, Any], body: dict[str, Any]) -> None:
        for key, value in extra.items():
            if key == "include" and isinstance(value, list):
                body["include"] = [*body.get("include", ()), *(v for v in value if v not in body.get("include", ()))]
            elif key in ("reasoning", "text") and isinstance(value, dict):
                body[key] = {**body.get(key, {}), **value}  # the caller's own settings win
            else:
                body.setdefault(key, value)

    def build_request(self, req: ChatRequest, model: str) -> UpstreamRequest:
        body = _encoder.encode(self.build_body(req, model))
        headers = self.stream_headers if req.stream else self.headers
        return UpstreamRequest(url=self.url, headers=dict(headers), body=body)

    def parse_response(self, body: bytes, req: ChatRequest) -> ChatResponse:
        try:
            r = _response_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise GatewayError("upstream", "upstream returned a malformed response object (not valid JSON)") from None
        if r.status == "failed":
            raise _failure(r)
        msg = message_of(r)
        choice = Choice(index=0, message=msg, finish_reason=_finish(r, bool(msg.tool_calls)))
        return ChatResponse(
            id=r.id or new_id("resp_"),
            model=r.model or req.model,
            created=r.created_at or now(),
            choices=[choice],
            usage=_usage(r.usage),
        )

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return ResponsesStreamParser(req.model)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        retry_after = retry_after_header(headers)
        message, _type, code, param = openai_error_fields(status, body)
        if status == 429 and code == "insufficient_quota":
            return GatewayError("quota", message, code="insufficient_quota", retry_after=retry_after, retryable=True)
        err = upstream_status_error(status, message, retry_after)
        if err.kind in ("invalid_request", "not_found", "too_large"):
            err.param = param
            err.code = err.code or code
        return err


PROVIDER = OpenAIResponsesProvider
