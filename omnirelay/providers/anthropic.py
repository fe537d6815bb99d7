"""Anthropic Messages upstream: the canonical request -> ``POST {base_url}/v1/messages`` and back.

Choices made where the canonical request asks for something the Messages API has no field for:

* ``max_tokens`` is required by Anthropic: without one from the caller, a per-model default is used
  (``options.default_max_tokens`` in the upstream config overrides it).
* Reasoning becomes ``thinking: {type: enabled, budget_tokens}``. Anthropic needs ``max_tokens >
  budget_tokens`` and rejects sampling changes (temperature, top_k, top_p under 0.95) while thinking, so
  max_tokens is raised to leave the caller's answer room and those settings are dropped.
* ``response_format`` (json_object / json_schema) has no native field. It is emulated with a forced tool whose
  ``input_schema`` is the schema: the model's tool input is then guaranteed to be JSON of that shape, and it
  is returned as the text content, so the caller sees exactly what OpenAI's structured output gives. A schema
  whose root is not an object (Anthropic requires one) is wrapped in ``{"value": ...}`` and unwrapped again.
* A forced tool choice (``any``/``tool``) cannot be combined with thinking (Anthropic rejects it); the forced
  choice is what the caller's code depends on, so thinking is left off in that case.
* A request that came in as Anthropic Messages keeps its own ``output_config`` (native structured output and
  effort, sent verbatim), so neither the answer-tool emulation nor an effort-derived budget applies to it;
  ``thinking: adaptive`` is sent as adaptive.
* ``anthropic-beta`` flags (``ChatRequest.betas``) are forwarded as the ``anthropic-beta`` header. System
  messages after the first turn stay in place when the caller sent the ``mid-conversation-system`` beta;
  otherwise they are hoisted into ``system``, which every Anthropic model accepts. For a third-party server
  that speaks Messages but not Anthropic's betas, ``options: {forward_betas: false}`` drops the header and
  always hoists.
* ``cache_control`` markers on system blocks, text and image blocks, tools and tool results are kept, so the
  prompt-cache breakpoints (and so the cache usage Anthropic reports) are exactly the caller's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from omnirelay.core.catalog import ALIASES
from omnirelay.core.errors import ErrorKind, GatewayError, invalid, retry_after_header, upstream_status_error
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
from omnirelay.core.ids import now
from omnirelay.core.reasoning import MIN_BUDGET, budget_of
from omnirelay.core.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
    ImagePart,
    Message,
    Part,
    Reasoning,
    ReasoningPart,
    TextPart,
    ToolCall,
    Usage,
)
from omnirelay.providers.base import CHAT, COUNT_TOKENS, HttpProvider, StreamParser, UpstreamRequest
from omnirelay.providers.passthrough import FrameRelay
from omnirelay.wire import anthropic_messages as wire
from omnirelay.wire.sse import SSEDecoder

if TYPE_CHECKING:
    from omnirelay.config import UpstreamConfig

log = logging.getLogger("omnirelay.providers.anthropic")

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
OUTPUT_TOOL = "json_response"
MID_CONVERSATION_SYSTEM_BETA = "mid-conversation-system-"
MAX_ERROR_MESSAGE = 1000

# Output-token ceilings by model family (the first matching prefix wins); the default max_tokens and the
# room added for thinking stay under them. Unknown models get the conservative last entry.
OUTPUT_LIMITS: tuple[tuple[str, int], ...] = (
    ("claude-opus-4", 32_000),
    ("claude-sonnet-4", 64_000),
    ("claude-haiku-4", 64_000),
    ("claude-3-7-sonnet", 64_000),
    ("claude-3-5", 8_192),
    ("claude-3-", 4_096),
    ("", 32_000),
)
DEFAULT_MAX_TOKENS = 8_192

_ENCODER = msgspec.json.Encoder()
_RESPONSE = msgspec.json.Decoder(wire.MessageResponse)
_EVENT: msgspec.json.Decoder[wire.StreamEvent] = msgspec.json.Decoder(wire.StreamEvent)
_ERROR = msgspec.json.Decoder(wire.ErrorBody)


class TokenCount(msgspec.Struct):
    input_tokens: int


_COUNT = msgspec.json.Decoder(TokenCount)
# Messages fields ``/v1/messages/count_tokens`` does not accept.
NOT_COUNTED_FIELDS = frozenset(
    {"max_tokens", "stream", "temperature", "top_p", "top_k", "stop_sequences", "metadata", "service_tier"}
)

# Bedrock ids: optional region prefix, "anthropic.", the model, a "-v1:0" version suffix.
_BEDROCK_ID = re.compile(r"^(?:[a-z]{2,4}\.)?anthropic\.(?P<name>.+?)(?:-v\d+(?::\d+)?)?$")

FINISH_BY_STOP_REASON: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop_sequence",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}

KIND_BY_ERROR_TYPE: dict[str, ErrorKind] = {
    "invalid_request_error": "invalid_request",
    "not_found_error": "not_found",
    "request_too_large": "too_large",
    "rate_limit_error": "rate_limit",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
}


def upstream_model_name(model: str) -> str:
    """Anthropic's own id for a cloud-platform spelling (Bedrock ``anthropic.X-v1:0``, Vertex ``X@date``);
    other names pass unchanged."""
    if "@" not in model and "anthropic." not in model:
        return model
    known = ALIASES.get(model)
    if known is not None and known.startswith("claude"):
        return known
    m = _BEDROCK_ID.match(model)
    if m:
        model = m.group("name")
    return model.replace("@", "-")


def output_limit(model: str) -> int:
    for prefix, limit in OUTPUT_LIMITS:
        if model.startswith(prefix):
            return limit
    return OUTPUT_LIMITS[-1][1]


# --- structured output emulation ---------------------------------------------------------------------------


class OutputTool(msgspec.Struct, kw_only=True, frozen=True):
    """The forced tool standing in for ``response_format``; ``wrapped`` when the schema root is not an object."""

    name: str
    schema: dict[str, Any]
    wrapped: bool
    description: str


def native_output_config(req: ChatRequest) -> dict[str, Any] | None:
    """The caller's own ``output_config`` when the request came in as Anthropic Messages."""
    if req.inbound_protocol != "anthropic":
        return None
    config = req.extra.get("output_config")
    return config if isinstance(config, dict) else None


def output_tool(req: ChatRequest) -> OutputTool | None:
    rf = req.response_format
    if rf is None or rf.type == "text":
        return None
    native = native_output_config(req)
    if native is not None and native.get("format") is not None:
        return None  # Anthropic's own structured output does it
    if req.tool_choice is not None and req.tool_choice.mode == "tool":
        return None  # the caller forces one of its own tools: that call is the answer
    taken = {t.name for t in req.tools}
    name = OUTPUT_TOOL
    while name in taken:
        name += "_"
    schema: dict[str, Any] = (rf.schema if rf.type == "json_schema" else None) or {"type": "object"}
    wrapped = schema.get("type") != "object"
    if wrapped:
        schema = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
    what = f" `{rf.name}`" if rf.name else ""
    description = f"Give the final answer{what} by calling this tool; its input is the answer as JSON."
    if rf.description:
        description += " " + rf.description
    return OutputTool(name=name, schema=schema, wrapped=wrapped, description=description)


def _answer_json(tool: OutputTool, value: Any) -> str:
    if tool.wrapped and isinstance(value, dict):
        value = value.get("value")
    return _ENCODER.encode(value).decode()


# --- request building ------------------------------------------------------------------------------------


def _data_url(url: str) -> tuple[str, str] | None:
    """(media_type, base64 data) of a ``data:<type>;base64,<data>`` URL."""
    head, sep, data = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        return None
    return head[5:-7] or "application/octet-stream", data


def _image_block(p: ImagePart) -> wire.ImageBlock | wire.DocumentBlock:
    block = _bare_image_block(p)
    if p.cache_control is not None:
        block.cache_control = p.cache_control
    return block


def _bare_image_block(p: ImagePart) -> wire.ImageBlock | wire.DocumentBlock:
    data, media_type = p.data, p.media_type
    if data is None and p.url is not None and p.url.startswith("data:"):
        parsed = _data_url(p.url)
        if parsed is None:
            raise invalid("image data URLs must be base64-encoded", "messages")
        media_type, data = parsed
    if media_type == "application/pdf":
        source: dict[str, Any] = (
            {"type": "base64", "media_type": media_type, "data": data}
            if data is not None
            else {"type": "url", "url": p.url}
        )
        return wire.DocumentBlock(source=source)
    if data is not None:
        return wire.ImageBlock(source=wire.Base64Source(media_type=media_type or "image/png", data=data))
    if p.url:
        return wire.ImageBlock(source=wire.UrlSource(url=p.url))
    raise invalid("an image part has neither url nor data", "messages")


def _part_blocks(parts: list[Part]) -> list[wire.ToolResultContent]:
    blocks: list[wire.ToolResultContent] = []
    for p in parts:
        if isinstance(p, TextPart):
            if p.text:  # Anthropic rejects empty text blocks
                blocks.append(wire.TextBlock(text=p.text, cache_control=p.cache_control))
        else:
            blocks.append(_image_block(p))
    return blocks


def _tool_input(arguments: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        return {}  # a broken call in the history (e.g. a truncated upstream reply) replays as no input
    return value if isinstance(value, dict) else {}


def _tool_result(m: Message) -> wire.ToolResultBlock:
    content: str | list[wire.ToolResultContent] | None
    if all(isinstance(p, TextPart) and p.cache_control is None for p in m.content):
        content = m.text()
    else:
        content = _part_blocks(m.content)
    return wire.ToolResultBlock(
        tool_use_id=m.tool_call_id or "",
        content=content,
        is_error=True if m.is_error else None,
        cache_control=m.cache_control,
    )


def _assistant_blocks(m: Message) -> list[wire.ContentBlock]:
    blocks: list[wire.ContentBlock] = []
    for r in m.reasoning:
        if r.redacted is not None:
            blocks.append(wire.RedactedThinkingBlock(data=r.redacted))
        elif r.signature:
            blocks.append(wire.ThinkingBlock(thinking=r.text, signature=r.signature))
        # Unsigned reasoning came from another provider: Anthropic would reject it, so it is not replayed.
    blocks.extend(_part_blocks(m.content))
    for call in m.tool_calls:
        blocks.append(wire.ToolUseBlock(id=call.id, name=call.name, input=_tool_input(call.arguments)))
    return blocks


def _system_blocks(m: Message) -> list[wire.TextBlock]:
    return [
        wire.TextBlock(text=p.text, cache_control=p.cache_control)
        for p in m.content
        if isinstance(p, TextPart) and p.text
    ]


def _conversation(
    messages: list[Message], system_in_place: bool = False
) -> tuple[list[wire.TextBlock], list[wire.MessageParam]]:
    """System text hoisted to the top-level field (later system messages stay in place with
    ``system_in_place``); tool results grouped into user turns; consecutive turns of the same role merged (the
    API would merge them anyway, and tool results must share one user turn)."""
    system: list[wire.TextBlock] = []
    turns: list[wire.MessageParam] = []
    blocks: list[wire.ContentBlock]
    for m in messages:
        if m.role in ("system", "developer"):
            if system_in_place and turns:
                in_place: list[wire.ContentBlock] = [*_system_blocks(m)]
                if in_place:
                    turns.append(wire.MessageParam(role="system", content=in_place))
            else:
                system.extend(_system_blocks(m))
            continue
        if m.role == "tool":
            role, blocks = "user", [_tool_result(m)]
        elif m.role == "user":
            role, blocks = "user", [*_part_blocks(m.content)]
        else:
            role, blocks = "assistant", _assistant_blocks(m)
        if not blocks:
            continue
        last = turns[-1] if turns else None
        if last is not None and last.role == role and isinstance(last.content, list):
            last.content.extend(blocks)
        else:
            turns.append(wire.MessageParam(role="user" if role == "user" else "assistant", content=blocks))
    for turn in turns:
        only = turn.content[0] if len(turn.content) == 1 else None
        if isinstance(only, wire.TextBlock) and only.cache_control is None and turn.role == "user":
            turn.content = only.text
    return system, turns


def _tool_choice(req: ChatRequest, out_tool: OutputTool | None) -> wire.ToolChoice | None:
    disable = True if req.parallel_tool_calls is False else None
    tc = req.tool_choice
    if out_tool is not None:
        if req.tools and (tc is None or tc.mode in ("auto", "required")):
            # Either one of the caller's tools or the answer tool: "any" keeps both possible.
            return wire.ToolChoiceAny(disable_parallel_tool_use=disable)
        return wire.ToolChoiceTool(name=out_tool.name, disable_parallel_tool_use=disable)
    if not req.tools:
        return None
    if tc is None:
        return wire.ToolChoiceAuto(disable_parallel_tool_use=True) if disable else None
    if tc.mode == "none":
        return wire.ToolChoiceNone()
    if tc.mode == "required":
        return wire.ToolChoiceAny(disable_parallel_tool_use=disable)
    if tc.mode == "tool":
        if not tc.name:
            raise invalid("tool_choice names no tool", "tool_choice")
        return wire.ToolChoiceTool(name=tc.name, disable_parallel_tool_use=disable)
    return wire.ToolChoiceAuto(disable_parallel_tool_use=disable)


def _thinking_request(req: ChatRequest, forced: bool) -> tuple[Reasoning | None, bool]:
    """The reasoning that decides ``thinking``, and whether it is adaptive (never with a forced tool)."""
    reasoning = req.reasoning
    native = native_output_config(req)
    if reasoning is not None and native is not None and native.get("effort") is not None:
        # The effort travels in output_config itself; it is not a request for a thinking budget.
        reasoning = msgspec.structs.replace(reasoning, effort=None)
    adaptive = reasoning is not None and reasoning.enabled and reasoning.adaptive and not forced
    return reasoning, adaptive


# --- response parsing ------------------------------------------------------------------------------------


def canonical_usage(
    input_tokens: int, output_tokens: int, cache_read: int, cache_creation: int, thinking: int
) -> Usage:
    return Usage(
        input_tokens=input_tokens + cache_read + cache_creation,
        output_tokens=output_tokens,
        cached_tokens=cache_read,
        cache_write_tokens=cache_creation,
        reasoning_tokens=thinking,
    )


def _finish(stop_reason: str | None, has_tool_calls: bool) -> FinishReason:
    finish = FINISH_BY_STOP_REASON.get(stop_reason or "end_turn", "stop")
    if finish == "tool_calls" and not has_tool_calls:
        return "stop"  # only the structured-output tool was called: that is a plain answer
    return finish


def stream_error(detail: wire.ErrorDetail) -> GatewayError:
    """An ``error`` event inside a 200 stream (no HTTP status to go by)."""
    kind = KIND_BY_ERROR_TYPE.get(detail.type, "upstream")
    return GatewayError(kind, detail.message[:MAX_ERROR_MESSAGE] or detail.type, code=detail.type)


class _PlainTextDelta(msgspec.Struct):
    type: Literal["text_delta"]
    text: str


class _PlainDeltaEvent(msgspec.Struct):
    """A ``content_block_delta`` event that may go to a Messages caller as it is: text for a text block."""

    type: Literal["content_block_delta"]
    index: int
    delta: _PlainTextDelta


_plain_deltas = msgspec.json.Decoder(list[_PlainDeltaEvent])
_DELTA_FRAME = b"event: content_block_delta\ndata: "
_NEXT_DELTA = b"\n\n" + _DELTA_FRAME
# Where the plain frames of a read usually end: the text block's stop.
_PLAIN_END = b"event: content_block_stop"


def _plain_text_deltas(frames: bytes, kinds: dict[int, str]) -> tuple[list[str], int] | None:
    """The texts and block index of ``frames`` (whole SSE frames) if every one is a ``text_delta`` of the same text
    block (``kinds``: the parser's block kinds), else None. One decode for all of them, joined into a JSON array."""
    if not frames.startswith(_DELTA_FRAME):
        return None
    body = frames[len(_DELTA_FRAME) : -2]
    try:
        events = _plain_deltas.decode(b"[" + body.replace(_NEXT_DELTA, b",") + b"]")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if len(events) != body.count(_NEXT_DELTA) + 1:  # the frames must be exactly the array's items
        return None
    block = events[0].index
    if kinds.get(block) != "text" or any(e.index != block for e in events):
        return None
    return [e.delta.text for e in events], block


class AnthropicStreamParser(StreamParser):
    def __init__(self, out_tool: OutputTool | None) -> None:
        self.out_tool = out_tool
        self.sse = SSEDecoder()
        self.started = False
        self.done = False  # message_stop seen
        self.failed = False
        self.ended = False  # ChoiceEnd emitted
        self.kinds: dict[int, str] = {}  # content block index -> "text" | "thinking" | "tool" | "answer" | "skip"
        self.tool_of_block: dict[int, int] = {}
        self.args_seen: set[int] = set()
        self.answer_buf: dict[int, list[str]] = {}
        self.tools = 0
        self.usage = wire.DeltaUsage(output_tokens=0)

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for sse in self.sse.feed(chunk):
            if self.done or self.failed:
                break
            if sse.event is not None and sse.event not in wire.STREAM_EVENT_TYPES:
                continue  # Anthropic may add event types; unknown ones are to be ignored
            try:
                self._event(_EVENT.decode(sse.data), out)
            except (msgspec.DecodeError, msgspec.ValidationError, GatewayError) as exc:
                err = (
                    exc
                    if isinstance(exc, GatewayError)
                    else GatewayError("upstream", "the Anthropic upstream sent a malformed stream event")
                )
                if not self.started:
                    raise err from None  # nothing reached the caller yet: the relay may try another channel
                # Keep what this chunk already produced, then end the stream with the failure.
                self.failed = True
                out.append(StreamFailure(error=err))
                break
        return out

    def _report(self) -> UsageReport:
        u = self.usage
        thinking = u.output_tokens_details.thinking_tokens if u.output_tokens_details else 0
        return UsageReport(
            usage=canonical_usage(
                u.input_tokens or 0,
                u.output_tokens,
                u.cache_read_input_tokens or 0,
                u.cache_creation_input_tokens or 0,
                thinking,
            )
        )

    def _event(self, event: wire.StreamEvent, out: list[StreamEvent]) -> None:
        if isinstance(event, wire.PingEvent):
            return
        if isinstance(event, wire.ErrorEvent):
            raise stream_error(event.error)
        if isinstance(event, wire.MessageStartEvent):
            self.started = True
            msg = event.message
            self.usage = wire.DeltaUsage(
                output_tokens=msg.usage.output_tokens,
                input_tokens=msg.usage.input_tokens,
                cache_creation_input_tokens=msg.usage.cache_creation_input_tokens,
                cache_read_input_tokens=msg.usage.cache_read_input_tokens,
            )
            out.append(StreamStart(id=msg.id, model=msg.model, created=now()))
            out.append(self._report())
            return
        if not self.started:
            raise GatewayError("upstream", f"the Anthropic upstream sent {type(event).__name__} before message_start")
        if isinstance(event, wire.ContentBlockStartEvent):
            self._block_start(event.index, event.content_block, out)
        elif isinstance(event, wire.ContentBlockDeltaEvent):
            self._block_delta(event.index, event.delta, out)
        elif isinstance(event, wire.ContentBlockStopEvent):
            self._block_stop(event.index, out)
        elif isinstance(event, wire.MessageDeltaEvent):
            u = event.usage  # cumulative: overwrite what is present, keep the rest
            self.usage.output_tokens = u.output_tokens
            for field in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
                if getattr(u, field) is not None:
                    setattr(self.usage, field, getattr(u, field))
            if u.output_tokens_details is not None:
                self.usage.output_tokens_details = u.output_tokens_details
            finish = _finish(event.delta.stop_reason, self.tools > 0)
            out.append(ChoiceEnd(finish_reason=finish, stop_sequence=event.delta.stop_sequence))
            self.ended = True
            out.append(self._report())
        elif isinstance(event, wire.MessageStopEvent):
            self.done = True
            if not self.ended:
                out.append(ChoiceEnd(finish_reason="tool_calls" if self.tools else "stop"))
                self.ended = True

    def _block_start(self, index: int, block: wire.AnyBlock, out: list[StreamEvent]) -> None:
        if block.type == "text":
            self.kinds[index] = "text"
            if block.text:
                out.append(TextDelta(text=block.text))
        elif block.type == "thinking":
            self.kinds[index] = "thinking"
            if block.thinking:
                out.append(ReasoningDelta(text=block.thinking))
        elif block.type == "redacted_thinking":
            self.kinds[index] = "skip"
            out.append(ReasoningDelta(redacted=block.data or ""))
        elif block.type == "tool_use" and self.out_tool is not None and block.name == self.out_tool.name:
            self.kinds[index] = "answer"
            self.answer_buf[index] = []
        elif block.type == "tool_use":
            self.kinds[index] = "tool"
            self.tool_of_block[index] = self.tools
            out.append(ToolCallStart(index=self.tools, id=block.id or "", name=block.name or ""))
            self.tools += 1
            if block.input:
                self.args_seen.add(index)
                out.append(
                    ToolCallArgs(index=self.tool_of_block[index], arguments=_ENCODER.encode(block.input).decode())
                )
        else:
            self.kinds[index] = "skip"  # server tool blocks and future types have no canonical form

    def _block_delta(self, index: int, delta: wire.AnyDelta, out: list[StreamEvent]) -> None:
        kind = self.kinds.get(index)
        if delta.type == "text_delta" and kind == "text" and delta.text:
            out.append(TextDelta(text=delta.text))
        elif delta.type == "thinking_delta" and kind == "thinking" and delta.thinking:
            out.append(ReasoningDelta(text=delta.thinking))
        elif delta.type == "signature_delta" and kind == "thinking" and delta.signature:
            out.append(ReasoningDelta(signature=delta.signature))
        elif delta.type == "input_json_delta" and delta.partial_json:
            if kind == "tool":
                self.args_seen.add(index)
                out.append(ToolCallArgs(index=self.tool_of_block[index], arguments=delta.partial_json))
            elif kind == "answer":
                assert self.out_tool is not None
                if self.out_tool.wrapped:
                    self.answer_buf[index].append(delta.partial_json)  # unwrapped once complete
                else:
                    self.answer_buf[index].append("")
                    out.append(TextDelta(text=delta.partial_json))

    def _block_stop(self, index: int, out: list[StreamEvent]) -> None:
        kind = self.kinds.get(index)
        if kind == "tool" and index not in self.args_seen:
            out.append(ToolCallArgs(index=self.tool_of_block[index], arguments="{}"))
        elif kind == "answer":
            assert self.out_tool is not None
            pieces = self.answer_buf.pop(index, [])
            if self.out_tool.wrapped:
                try:
                    value = msgspec.json.decode("".join(pieces)) if pieces else {}
                except msgspec.DecodeError:
                    raise GatewayError("upstream", "the Anthropic upstream streamed invalid tool JSON") from None
                out.append(TextDelta(text=_answer_json(self.out_tool, value)))
            elif not pieces:
                out.append(TextDelta(text="{}"))

    def close(self) -> list[StreamEvent]:
        if self.failed or self.done:
            return []
        raise GatewayError("upstream", "the Anthropic stream ended before message_stop")


# --- the provider ----------------------------------------------------------------------------------------


class AnthropicProvider(HttpProvider):
    family = "anthropic"
    capabilities = CHAT | COUNT_TOKENS

    def __init__(self, upstream: UpstreamConfig) -> None:
        super().__init__(upstream)
        base = (upstream.base_url or DEFAULT_BASE_URL).rstrip("/")
        if base.endswith("/v1"):
            base = base[:-3]
        self.url = base + "/v1/messages"
        self.count_url = base + "/v1/messages/count_tokens"
        self.headers: dict[str, str] = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if upstream.api_key:
            self.headers["x-api-key"] = upstream.api_key
        self.headers.update(upstream.headers)
        configured = upstream.options.get("default_max_tokens")
        self.default_max_tokens: int | None = int(configured) if configured else None
        self.forward_betas = bool(upstream.options.get("forward_betas", True))

    def build_request(self, req: ChatRequest, model: str) -> UpstreamRequest:
        model = upstream_model_name(model)
        if req.n > 1:
            raise invalid("n: Anthropic models return one choice per request", "n")
        betas = req.betas if self.forward_betas else []
        in_place = any(b.startswith(MID_CONVERSATION_SYSTEM_BETA) for b in betas)
        system, messages = _conversation(req.messages, system_in_place=in_place)
        out_tool = output_tool(req)
        limit = output_limit(model)
        answer_room = req.max_tokens or self.default_max_tokens or min(DEFAULT_MAX_TOKENS, limit)
        max_tokens = answer_room
        tool_choice = _tool_choice(req, out_tool)
        forced = isinstance(tool_choice, wire.ToolChoiceAny | wire.ToolChoiceTool)
        reasoning, adaptive = _thinking_request(req, forced)
        budget = None if forced or adaptive else budget_of(reasoning)
        temperature, top_p, top_k = req.temperature, req.top_p, req.top_k
        thinking: wire.ThinkingConfig | None = None
        if adaptive:
            thinking = wire.ThinkingAdaptive()
            temperature = top_k = None
            if top_p is not None and top_p < 0.95:
                top_p = None
        elif budget is not None:
            if max_tokens <= budget:
                max_tokens = min(budget + answer_room, limit)
                if budget >= max_tokens:  # the model's output ceiling: thinking gives way to the answer
                    budget = max(MIN_BUDGET, max_tokens - answer_room)
            thinking = wire.ThinkingEnabled(budget_tokens=budget)
            temperature = top_k = None
            if top_p is not None and top_p < 0.95:
                top_p = None
        elif req.reasoning is not None and not req.reasoning.enabled:
            thinking = wire.ThinkingDisabled()

        tools: list[msgspec.Raw] = [
            msgspec.Raw(
                _ENCODER.encode(
                    wire.ToolDef(
                        name=t.name,
                        description=t.description,
                        input_schema=t.parameters or {"type": "object", "properties": {}},
                        cache_control=t.cache_control,
                    )
                )
            )
            for t in req.tools
            if not (out_tool is not None and req.tool_choice is not None and req.tool_choice.mode == "none")
        ]
        if out_tool is not None:
            answer = wire.ToolDef(name=out_tool.name, description=out_tool.description, input_schema=out_tool.schema)
            tools.append(msgspec.Raw(_ENCODER.encode(answer)))
        extra: dict[str, Any] = dict(req.extra) if req.inbound_protocol == self.family else {}
        server_tools = extra.pop("tools", None)
        if isinstance(server_tools, list):
            tools.extend(msgspec.Raw(_ENCODER.encode(t)) for t in server_tools)

        body = wire.MessagesRequest(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            system=system or None,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            stop_sequences=req.stop or None,
            stream=True if req.stream else None,
            metadata=wire.Metadata(user_id=req.user) if req.user else None,
            tools=tools or None,
            tool_choice=tool_choice,
            thinking=thinking,
        )
        data = _ENCODER.encode(body)
        extra = {k: v for k, v in extra.items() if k not in wire.MESSAGES_REQUEST_FIELDS}
        if extra:
            # Fields the caller sent that omnirelay does not model, for an upstream of the same family.
            data = data[:-1] + b"," + _ENCODER.encode(extra)[1:]
        headers = self.headers
        if betas:
            # The upstream's configured betas (``headers:`` in its config) stay; the caller's are added.
            configured = [b for b in headers.get("anthropic-beta", "").split(",") if b]
            flags = configured + [b for b in betas if b not in configured]
            headers = {**headers, "anthropic-beta": ",".join(flags)}
        return UpstreamRequest(url=self.url, headers=headers, body=data)

    def parse_response(self, body: bytes, req: ChatRequest) -> ChatResponse:
        try:
            resp = _RESPONSE.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise GatewayError("upstream", "the Anthropic upstream sent a malformed response") from None
        out_tool = output_tool(req)
        msg = Message(role="assistant")
        answer: str | None = None
        for block in resp.content:
            if block.type == "text":
                msg.content.append(TextPart(text=block.text or ""))
            elif block.type == "thinking":
                msg.reasoning.append(ReasoningPart(text=block.thinking or "", signature=block.signature))
            elif block.type == "redacted_thinking":
                msg.reasoning.append(ReasoningPart(redacted=block.data or ""))
            elif block.type == "tool_use" and out_tool is not None and block.name == out_tool.name:
                answer = _answer_json(out_tool, block.input or {})
            elif block.type == "tool_use":
                args = _ENCODER.encode(block.input or {}).decode()
                msg.tool_calls.append(ToolCall(id=block.id or "", name=block.name or "", arguments=args))
        if answer is not None:
            msg.content = [TextPart(text=answer)]  # structured output: the JSON is the whole answer
        u = resp.usage
        usage = canonical_usage(
            u.input_tokens,
            u.output_tokens,
            u.cache_read_input_tokens or 0,
            u.cache_creation_input_tokens or 0,
            u.output_tokens_details.thinking_tokens if u.output_tokens_details else 0,
        )
        choice = Choice(
            index=0,
            message=msg,
            finish_reason=_finish(resp.stop_reason, bool(msg.tool_calls)),
            stop_sequence=resp.stop_sequence,
        )
        return ChatResponse(id=resp.id, model=resp.model, created=now(), choices=[choice], usage=usage)

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return AnthropicStreamParser(output_tool(req))

    def frame_relay(self, req: ChatRequest, stream_format: str) -> StreamParser | None:
        """Messages frames to a Messages caller: the text deltas of text blocks forwarded as they are, everything
        else parsed (message start and delta for usage and stop reason, block starts and stops, errors)."""
        if stream_format != wire.STREAM_FORMAT:
            return None
        parser = AnthropicStreamParser(output_tool(req))
        kinds = parser.kinds
        return FrameRelay(
            parser,
            lambda frames: _plain_text_deltas(frames, kinds),
            _PLAIN_END,
            lambda: parser.done or parser.failed,
        )

    def build_count_tokens(self, req: ChatRequest, model: str) -> UpstreamRequest:
        """``POST /v1/messages/count_tokens``: the Messages request this gateway would send, less the fields the
        endpoint does not take (it refuses ``max_tokens``, ``stream`` and the sampling settings)."""
        sent = self.build_request(req, model)
        fields = msgspec.json.decode(sent.body)
        body = {k: v for k, v in fields.items() if k not in NOT_COUNTED_FIELDS}
        return UpstreamRequest(url=self.count_url, headers=sent.headers, body=_ENCODER.encode(body))

    def parse_count_tokens(self, body: bytes) -> int:
        try:
            return _COUNT.decode(body).input_tokens
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise GatewayError("upstream", "the Anthropic upstream sent a malformed token count") from None

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        retry_after = retry_after_header(headers)
        error_type: str | None = None
        try:
            detail = _ERROR.decode(body).error
            error_type, message = detail.type, detail.message[:MAX_ERROR_MESSAGE]
        except (msgspec.DecodeError, msgspec.ValidationError):
            message = f"upstream returned HTTP {status}"
        if error_type == "overloaded_error" and status not in (503, 529):
            status = 529  # overload reported under another status is still overload
        err = upstream_status_error(status, message, retry_after)
        if error_type is not None and err.code is None:
            err.code = error_type
        return err


PROVIDER = AnthropicProvider
