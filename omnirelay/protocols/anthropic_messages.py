"""Inbound Anthropic Messages API: ``POST /v1/messages`` <-> the canonical core.

Mapping choices worth knowing:

* ``tool_result`` blocks become role ``tool`` messages, one per result and in order, placed before whatever
  else the same user turn carries (Anthropic requires results first, so the order is preserved both ways).
* ``thinking`` blocks become ``Message.reasoning`` with their signature so a tool loop with extended thinking
  can be replayed to an Anthropic upstream verbatim.
* Usage: the canonical ``input_tokens`` includes cache reads and writes; Anthropic's excludes both, so the
  renderers subtract them.
* Streaming: OpenAI-style upstreams report usage only at the end, so ``message_delta`` (stop reason and the
  final usage) is held back until ``finish()``.
* ``role: "system"`` messages inside ``messages`` stay in place as canonical system messages.
* ``output_config.format`` (json_schema) becomes the canonical ``response_format`` and ``output_config.effort``
  the reasoning effort (``max`` counts as ``high`` elsewhere; an Anthropic upstream gets the object verbatim).
  ``thinking: adaptive`` is ``Reasoning(adaptive=True)`` with that effort as its hint.
* ``anthropic-beta`` flags go to ``ChatRequest.betas``.
* A tool call's opaque upstream signature (Gemini's thought signature) has no field in Anthropic's
  ``tool_use`` block that clients echo back, so it rides inside the block's ``id``:
  ``<call id>__sig_<urlsafe base64 of the signature>``. Clients send that id back unchanged (in the
  ``tool_use`` history and as ``tool_result.tool_use_id``) and it is split again here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from omnirelay.core.errors import GatewayError, invalid
from omnirelay.core.estimate import estimate_request_tokens
from omnirelay.core.events import (
    ChoiceEnd,
    CitationDelta,
    RawFrames,
    ReasoningDelta,
    ServerToolUse,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    TextRun,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.ids import new_id
from omnirelay.core.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    Citation,
    Effort,
    FinishReason,
    ImagePart,
    Message,
    Part,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    ServerToolCall,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from omnirelay.protocols.base import InboundProtocol, StreamEncoder, check_nesting
from omnirelay.wire import anthropic_messages as wire
from omnirelay.wire.sse import encode_event, json_string_bodies

log = logging.getLogger("omnirelay.protocols.anthropic")

_REQUEST = msgspec.json.Decoder(wire.MessagesRequest)
_TOP_LEVEL_KEYS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_TOOL_DEF = msgspec.json.Decoder(wire.ToolDef)
_ENCODER = msgspec.json.Encoder()

SIGNATURE_SEPARATOR = "__sig_"
_URLSAFE_BASE64 = re.compile(r"[A-Za-z0-9_-]+")
# output_config.effort -> canonical effort ("max" has no counterpart outside Anthropic).
EFFORTS: dict[str, Effort] = {"low": "low", "medium": "medium", "high": "high", "max": "high"}

# msgspec's ValidationError text: "<what> - at `$.path`" (the path is absent for top-level problems).
_AT_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")

STOP_REASONS: dict[FinishReason, str] = {
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
}

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    529: "overloaded_error",
}


def error_type(err: GatewayError) -> str:
    if err.kind == "overloaded":
        return "overloaded_error"
    found = ERROR_TYPES.get(err.status)
    if found is not None:
        return found
    # Anthropic documents invalid_request_error for any other 4xx.
    return "invalid_request_error" if err.status < 500 else "api_error"


def _validation_error(exc: msgspec.ValidationError, prefix: str = "") -> GatewayError:
    """msgspec's message rewritten in Anthropic's ``field.path: problem`` style, with the path as param."""
    m = _AT_PATH.match(str(exc))
    assert m is not None  # the pattern matches any string
    msg, path = m.group("msg"), (m.group("path") or "").lstrip(".")
    missing = _MISSING_FIELD.match(msg)
    if missing:
        path = f"{path}.{missing.group('field')}" if path else missing.group("field")
        msg = "Field required"
    if prefix:
        path = f"{prefix}.{path}" if path and not path.startswith("[") else prefix + path
    return invalid(f"{path}: {msg}" if path else msg, param=path or None)


# --- tool-call ids carrying a signature ---------------------------------------------------------------------


def tool_use_id(call_id: str, signature: str | None) -> str:
    """The ``tool_use`` id shown to the client: the call id, plus the call's signature when it has one."""
    if not signature:
        return call_id
    packed = base64.urlsafe_b64encode(signature.encode()).decode().rstrip("=")
    return f"{call_id}{SIGNATURE_SEPARATOR}{packed}"


def split_tool_use_id(value: str) -> tuple[str, str | None]:
    """(call id, signature) of an id made by ``tool_use_id``; other ids come back whole, with no signature."""
    # The first separator: the packed signature may itself contain one (its alphabet has "_").
    call_id, sep, packed = value.partition(SIGNATURE_SEPARATOR)
    if not sep or not call_id or not _URLSAFE_BASE64.fullmatch(packed):
        return value, None
    try:
        signature = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)).decode()
    except (binascii.Error, ValueError):
        return value, None
    return (call_id, signature) if signature else (value, None)


# --- request ---------------------------------------------------------------------------------------------


def _image_part(source: wire.ImageSource, path: str, cache_control: dict[str, Any] | None = None) -> ImagePart:
    if isinstance(source, wire.Base64Source):
        return ImagePart(data=source.data, media_type=source.media_type, cache_control=cache_control)
    if isinstance(source, wire.UrlSource):
        return ImagePart(url=source.url, cache_control=cache_control)
    raise invalid(f"{path}.source: file sources are not supported by this gateway", f"{path}.source")


def _document_part(block: wire.DocumentBlock, path: str) -> Part:
    # A PDF travels as an ImagePart with its media type; the Anthropic provider turns it back into a
    # document block, other providers send it as an inline file where they can.
    source = block.source
    kind = source.get("type")
    cache = block.cache_control
    if kind == "base64" and isinstance(source.get("data"), str):
        media_type = str(source.get("media_type") or "application/pdf")
        return ImagePart(data=source["data"], media_type=media_type, cache_control=cache)
    if kind == "url" and isinstance(source.get("url"), str):
        return ImagePart(url=source["url"], media_type="application/pdf", cache_control=cache)
    if kind == "text" and isinstance(source.get("data"), str):
        return TextPart(text=source["data"], cache_control=block.cache_control)
    raise invalid(f"{path}.source: document source type {kind!r} is not supported", f"{path}.source")


def _input_part(block: wire.ContentBlock, path: str) -> Part:
    if isinstance(block, wire.TextBlock):
        return TextPart(text=block.text, cache_control=block.cache_control)
    if isinstance(block, wire.ImageBlock):
        return _image_part(block.source, path, block.cache_control)
    if isinstance(block, wire.DocumentBlock):
        return _document_part(block, path)
    raise invalid(f"{path}: unexpected block type here", f"{path}.type")


def _tool_result(block: wire.ToolResultBlock, path: str, tool_names: dict[str, str]) -> Message:
    content: list[Part]
    if block.content is None:
        content = []
    elif isinstance(block.content, str):
        content = [TextPart(text=block.content)]
    else:
        content = [_input_part(b, f"{path}.content[{k}]") for k, b in enumerate(block.content)]
    call_id, _signature = split_tool_use_id(block.tool_use_id)
    return Message(
        role="tool",
        content=content,
        tool_call_id=call_id,
        name=tool_names.get(call_id),
        is_error=bool(block.is_error),
        cache_control=block.cache_control,
    )


def _user_turn(blocks: list[wire.ContentBlock], path: str, tool_names: dict[str, str]) -> list[Message]:
    results: list[Message] = []
    parts: list[Part] = []
    for j, block in enumerate(blocks):
        where = f"{path}.content[{j}]"
        if isinstance(block, wire.ToolResultBlock):
            results.append(_tool_result(block, where, tool_names))
        elif isinstance(block, wire.TextBlock | wire.ImageBlock | wire.DocumentBlock):
            parts.append(_input_part(block, where))
        else:
            raise invalid(f"{where}: {block_type(block)} blocks are only allowed in assistant messages", where)
    if parts:
        results.append(Message(role="user", content=parts))
    return results


def _assistant_turn(blocks: list[wire.ContentBlock], path: str, tool_names: dict[str, str]) -> Message:
    msg = Message(role="assistant")
    for j, block in enumerate(blocks):
        where = f"{path}.content[{j}]"
        if isinstance(block, wire.TextBlock):
            msg.content.append(TextPart(text=block.text, cache_control=block.cache_control))
        elif isinstance(block, wire.ToolUseBlock):
            call_id, signature = split_tool_use_id(block.id)
            tool_names[call_id] = block.name
            args = _ENCODER.encode(block.input).decode()
            msg.tool_calls.append(ToolCall(id=call_id, name=block.name, arguments=args, signature=signature))
        elif isinstance(block, wire.ThinkingBlock):
            msg.reasoning.append(ReasoningPart(text=block.thinking, signature=block.signature))
        elif isinstance(block, wire.RedactedThinkingBlock):
            msg.reasoning.append(ReasoningPart(redacted=block.data))
        elif isinstance(block, wire.ImageBlock | wire.DocumentBlock):
            msg.content.append(_input_part(block, where))
        elif isinstance(block, wire.ServerToolUseBlock):
            continue  # the call already ran on the server; its result block below carries what it found
        elif isinstance(block, wire.ServerToolResultBlock):
            # History of a server tool run (ours or Anthropic's): kept as context text, since a follow-up turn
            # may go to any upstream and only Anthropic's own API understands these blocks.
            msg.content.append(TextPart(text=_server_result_text(block)))
        else:
            raise invalid(f"{where}: tool_result blocks are only allowed in user messages", where)
    return msg


SERVER_RESULT_TEXT_LIMIT = 4000


def _server_result_text(block: wire.ServerToolResultBlock) -> str:
    body = _ENCODER.encode(block.content).decode()
    if len(body) > SERVER_RESULT_TEXT_LIMIT:
        body = body[:SERVER_RESULT_TEXT_LIMIT] + "..."
    return f"[{block_type(block)}] {body}"


def block_type(block: wire.ContentBlock) -> str:
    tag: str = block.__struct_config__.tag  # type: ignore[assignment]
    return tag


def _system(system: str | list[wire.TextBlock]) -> Message:
    if isinstance(system, str):
        return Message(role="system", content=[TextPart(text=system)])
    return Message(role="system", content=[TextPart(text=b.text, cache_control=b.cache_control) for b in system])


def _system_message(content: str | list[wire.ContentBlock], path: str) -> Message:
    """A ``role: "system"`` entry of ``messages``: text only, each block kept as its own part."""
    if isinstance(content, str):
        return Message(role="system", content=[TextPart(text=content)])
    parts: list[Part] = []
    for j, block in enumerate(content):
        if not isinstance(block, wire.TextBlock):
            where = f"{path}.content[{j}]"
            raise invalid(f"{where}: system messages may contain only text blocks", f"{where}.type")
        parts.append(TextPart(text=block.text, cache_control=block.cache_control))
    return Message(role="system", content=parts)


def _messages(w: wire.MessagesRequest) -> list[Message]:
    out: list[Message] = []
    if w.system:
        out.append(_system(w.system))
    tool_names: dict[str, str] = {}
    for i, m in enumerate(w.messages):
        path = f"messages[{i}]"
        if m.role == "system":
            out.append(_system_message(m.content, path))
        elif isinstance(m.content, str):
            out.append(Message(role=m.role, content=[TextPart(text=m.content)]))
        elif m.role == "user":
            out.extend(_user_turn(m.content, path, tool_names))
        else:
            out.append(_assistant_turn(m.content, path, tool_names))
    return out


def _tools(raw_tools: list[msgspec.Raw], extra: dict[str, Any]) -> list[Tool]:
    tools: list[Tool] = []
    server_tools: list[Any] = []
    for k, raw in enumerate(raw_tools):
        try:
            tool = _TOOL_DEF.decode(raw)
        except msgspec.ValidationError as exc:
            raise _validation_error(exc, prefix=f"tools[{k}]") from None
        if tool.type not in (None, "custom"):
            # A server tool (web search, code execution, ...): only an Anthropic upstream can run it.
            server_tools.append(msgspec.json.decode(raw))
            continue
        if tool.input_schema is None:
            raise invalid(f"tools[{k}].input_schema: Field required", f"tools[{k}].input_schema")
        tools.append(
            Tool(
                name=tool.name,
                description=tool.description,
                parameters=tool.input_schema,
                cache_control=tool.cache_control,
            )
        )
    if server_tools:
        extra["tools"] = server_tools
    return tools


def _tool_choice(choice: wire.ToolChoice | None) -> tuple[ToolChoice | None, bool | None]:
    """The canonical choice and ``parallel_tool_calls`` (False when parallel use was disabled)."""
    if choice is None:
        return None, None
    if isinstance(choice, wire.ToolChoiceNone):
        return ToolChoice(mode="none"), None
    parallel = False if choice.disable_parallel_tool_use else None
    if isinstance(choice, wire.ToolChoiceAny):
        return ToolChoice(mode="required"), parallel
    if isinstance(choice, wire.ToolChoiceTool):
        return ToolChoice(mode="tool", name=choice.name), parallel
    return ToolChoice(mode="auto"), parallel


def _reasoning(thinking: wire.ThinkingConfig | None, effort: Effort | None) -> Reasoning | None:
    if thinking is None:
        return Reasoning(effort=effort) if effort is not None else None
    if isinstance(thinking, wire.ThinkingEnabled):
        return Reasoning(budget_tokens=thinking.budget_tokens, effort=effort)
    if isinstance(thinking, wire.ThinkingDisabled):
        return Reasoning(enabled=False)
    return Reasoning(adaptive=True, effort=effort)  # the model decides; each upstream's own adaptive mode


def _output_config(extra: dict[str, Any]) -> tuple[ResponseFormat | None, Effort | None]:
    """The structured-output schema and effort of ``output_config`` (left in ``extra`` for Anthropic)."""
    raw = extra.get("output_config")
    if raw is None:
        return None, None
    try:
        config = msgspec.convert(raw, wire.OutputConfig)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc, prefix="output_config") from None
    effort: Effort | None = None
    if config.effort is not None:
        effort = EFFORTS.get(config.effort)
        if effort is None:
            allowed = ", ".join(repr(e) for e in EFFORTS)
            raise invalid(f"output_config.effort: Input should be {allowed}", "output_config.effort")
    fmt = config.format
    if fmt is None:
        return None, effort
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise invalid("output_config.format: expected {type: 'json_schema', schema: {...}}", "output_config.format")
    # Not strict: OpenAI's strict mode refuses schemas Anthropic accepts (optional fields, open objects).
    return ResponseFormat(type="json_schema", schema=fmt["schema"]), effort


def betas(headers: Mapping[str, str]) -> list[str]:
    """The ``anthropic-beta`` flags of a request (comma-separated, possibly over several header lines)."""
    value = headers.get("anthropic-beta") or headers.get("Anthropic-Beta")
    if not value:
        return []
    return [flag.strip() for flag in value.split(",") if flag.strip()]


def opaque_user_id(user_id: str | None) -> str | None:
    """``metadata.user_id`` as the canonical ``user``. Claude Code sends a JSON object as this string (device id,
    account uuid, session id): no upstream gets that verbatim (it is neither an opaque id nor within OpenAI's
    ``user`` length) but ``user_`` and a hash of the object without its ``session_id``, the same for one user
    across sessions. Any other value is kept as it is."""
    if not user_id or not user_id.lstrip().startswith("{"):
        return user_id
    try:
        fields = msgspec.json.decode(user_id)
    except msgspec.DecodeError:
        fields = None
    if isinstance(fields, dict):
        fields.pop("session_id", None)
        identity = _ENCODER.encode(dict(sorted(fields.items())))
    else:
        identity = user_id.encode("utf-8", "surrogatepass")
    return "user_" + hashlib.sha256(identity).hexdigest()[:32]


def _check(w: wire.MessagesRequest) -> None:
    if not w.model:
        raise invalid("model: Field required", "model")
    if not w.messages:
        raise invalid("messages: at least one message is required", "messages")
    if w.max_tokens < 1:
        raise invalid("max_tokens: Input should be greater than or equal to 1", "max_tokens")
    if w.temperature is not None and not 0.0 <= w.temperature <= 1.0:
        raise invalid("temperature: Input should be between 0 and 1", "temperature")
    if w.top_p is not None and not 0.0 <= w.top_p <= 1.0:
        raise invalid("top_p: Input should be between 0 and 1", "top_p")
    if w.top_k is not None and w.top_k < 0:
        raise invalid("top_k: Input should be greater than or equal to 0", "top_k")
    if isinstance(w.thinking, wire.ThinkingEnabled) and w.thinking.budget_tokens < 1024:
        raise invalid("thinking.budget_tokens: Input should be greater than or equal to 1024", "thinking.budget_tokens")


# --- response --------------------------------------------------------------------------------------------


def _tool_input(arguments: str, name: str) -> dict[str, Any]:
    """Tool arguments as the object Anthropic requires. An upstream that produced invalid JSON (or a
    non-object) must not break the reply: the call is kept with an empty input and the problem logged."""
    if not arguments.strip():
        return {}
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        log.warning("tool call %r: upstream arguments are not valid JSON (%d chars); sending {}", name, len(arguments))
        return {}
    if isinstance(value, dict):
        return value
    log.warning("tool call %r: upstream arguments are not a JSON object; sending {}", name)
    return {}


def _citation(c: Citation) -> dict[str, Any]:
    # encrypted_index is opaque to clients; the cited span's offsets serve as a stable value.
    return {
        "type": "web_search_result_location",
        "url": c.url,
        "title": c.title,
        "cited_text": c.cited_text,
        "encrypted_index": f"{c.start_index}:{c.end_index}",
    }


def _server_tool_blocks(call: ServerToolCall) -> list[wire.AnyBlock]:
    """The ``server_tool_use`` block and its result block, as Anthropic returns its own web search, web fetch
    and code execution tools (the gateway's ``fetch`` and ``python`` are shown as ``web_fetch`` and
    ``code_execution``)."""
    content: list[dict[str, Any]] | dict[str, Any]
    if call.name == "fetch":
        name, kind = "web_fetch", "web_fetch_tool_result"
        if call.error is not None:
            content = {"type": "web_fetch_tool_result_error", "error_code": "url_not_accessible"}
        else:
            url = call.results[0].url if call.results else str(call.input.get("url", ""))
            title = call.results[0].title if call.results else None
            source = {"type": "text", "media_type": "text/plain", "data": call.output}
            content = {
                "type": "web_fetch_result",
                "url": url,
                "content": {"type": "document", "source": source, "title": title},
            }
    elif call.name == "python":
        name, kind = "code_execution", "code_execution_tool_result"
        if call.error is not None:
            content = {"type": "code_execution_tool_result_error", "error_code": "invalid_tool_input"}
        else:
            content = {
                "type": "code_execution_result",
                "stdout": call.output,
                "stderr": call.stderr,
                "return_code": call.return_code or 0,
                "content": [],
            }
    else:
        name, kind = call.name, "web_search_tool_result"
        if call.error is not None:
            content = {"type": "web_search_tool_result_error", "error_code": "unavailable"}
        else:
            content = [
                {
                    "type": "web_search_result",
                    "url": r.url,
                    "title": r.title,
                    "encrypted_content": "",
                    "page_age": r.page_age,
                }
                for r in call.results
            ]
    return [
        wire.AnyBlock(type="server_tool_use", id=call.id, name=name, input=call.input),
        wire.AnyBlock(type=kind, tool_use_id=call.id, content=content),
    ]


def _cited_text_blocks(text: str, citations: list[Citation]) -> list[wire.AnyBlock]:
    """Text split at the citation spans, each cited span its own block carrying its citations (as Anthropic
    returns web-search answers)."""
    blocks: list[wire.AnyBlock] = []
    at = 0
    spans: dict[tuple[int, int], list[Citation]] = {}
    for c in sorted(citations, key=lambda c: (c.start_index, c.end_index)):
        spans.setdefault((c.start_index, c.end_index), []).append(c)
    for (start, end), group in spans.items():
        if start < at or end > len(text):
            continue  # overlapping or out of range: keep the text whole rather than duplicate it
        if start > at:
            blocks.append(wire.AnyBlock(type="text", text=text[at:start]))
        blocks.append(wire.AnyBlock(type="text", text=text[start:end], citations=[_citation(c) for c in group]))
        at = end
    if at < len(text):
        blocks.append(wire.AnyBlock(type="text", text=text[at:]))
    return blocks


def _blocks(msg: Message) -> list[wire.AnyBlock]:
    blocks: list[wire.AnyBlock] = []
    for r in msg.reasoning:
        if r.redacted is not None:
            blocks.append(wire.AnyBlock(type="redacted_thinking", data=r.redacted))
        else:
            blocks.append(wire.AnyBlock(type="thinking", thinking=r.text, signature=r.signature or ""))
    for server_call in msg.server_tools:
        blocks.extend(_server_tool_blocks(server_call))
    if msg.citations:
        blocks.extend(_cited_text_blocks(msg.text(), msg.citations))
    for p in msg.content if not msg.citations else ():
        if isinstance(p, TextPart) and p.text:
            blocks.append(wire.AnyBlock(type="text", text=p.text))
    for call in msg.tool_calls:
        blocks.append(
            wire.AnyBlock(
                type="tool_use",
                id=tool_use_id(call.id, call.signature),
                name=call.name,
                input=_tool_input(call.arguments, call.name),
            )
        )
    return blocks


def stop_reason(finish: FinishReason | None, has_tool_calls: bool) -> str:
    # Anthropic clients drive tool loops off stop_reason == "tool_use", so it follows the blocks sent.
    if has_tool_calls and finish in (None, "stop", "tool_calls"):
        return "tool_use"
    if finish is None or (finish == "tool_calls" and not has_tool_calls):
        return "end_turn"
    return STOP_REASONS[finish]


def wire_usage(u: Usage, cost: float | None) -> wire.Usage:
    return wire.Usage(
        input_tokens=max(0, u.input_tokens - u.cached_tokens - u.cache_write_tokens),
        output_tokens=u.output_tokens,
        cache_creation_input_tokens=u.cache_write_tokens,
        cache_read_input_tokens=u.cached_tokens,
        output_tokens_details=wire.OutputTokensDetails(thinking_tokens=u.reasoning_tokens)
        if u.reasoning_tokens
        else None,
        cost=cost,
    )


def message_id(upstream_id: str) -> str:
    return upstream_id if upstream_id.startswith("msg_") else new_id("msg_")


# --- streaming -------------------------------------------------------------------------------------------


def _frame(event: wire.StreamEvent, name: str) -> bytes:
    return encode_event(_ENCODER.encode(event), name)


_TEXT_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_TEXT_DELTA_MID = b',"delta":{"type":"text_delta","text":'


class AnthropicStreamEncoder(StreamEncoder):
    """Canonical events -> Anthropic SSE. Blocks open lazily and a new one starts whenever the kind changes
    (thinking -> text -> tool_use); ``message_start`` waits for the first content so it can carry the usage
    an upstream reports up front (Anthropic does, exactly). OpenAI-style upstreams report it only at the end,
    so their ``message_start`` carries the estimate of ``core.estimate`` (clients such as Claude Code read the
    input count there), corrected by the exact count in ``message_delta``; the cache fields are always there."""

    def __init__(self, req: ChatRequest) -> None:
        self.id = new_id("msg_")
        self.req = req
        self.model = req.model
        self.started = False
        self.index = -1  # index of the latest content block
        self.open_kind: str | None = None  # "text" | "thinking" | "tool_use" while a block is open
        self.signature: str | None = None  # of the open thinking block, sent right before its stop
        self.tool_blocks: dict[int, int] = {}  # canonical tool-call index -> content block index
        self.usage = Usage()
        self.usage_reported = False  # False: ``usage`` is not the upstream's (the estimate stands in)
        self.finish_reason: FinishReason | None = None
        self.stop_sequence: str | None = None

    # -- frames ---------------------------------------------------------------------------------------

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        message = wire.MessageResponse(id=self.id, model=self.model, content=[], usage=wire_usage(self._usage(), None))
        return _frame(wire.MessageStartEvent(message=message), "message_start")

    def _usage(self) -> Usage:
        if not self.usage_reported:  # computed only here: an upstream that reports usage up front pays nothing
            self.usage = Usage(input_tokens=estimate_request_tokens(self.req))
            self.usage_reported = True  # until the upstream's own replaces it
        return self.usage

    def _close(self) -> bytes:
        if self.open_kind is None:
            return b""
        out = b""
        if self.open_kind == "thinking":
            delta = wire.AnyDelta(type="signature_delta", signature=self.signature or "")
            out = _frame(wire.ContentBlockDeltaEvent(index=self.index, delta=delta), "content_block_delta")
        self.open_kind = None
        self.signature = None
        return out + _frame(wire.ContentBlockStopEvent(index=self.index), "content_block_stop")

    def _open(self, kind: str, block: wire.AnyBlock) -> bytes:
        out = self._close()
        self.index += 1
        self.open_kind = kind
        return out + _frame(wire.ContentBlockStartEvent(index=self.index, content_block=block), "content_block_start")

    def _delta(self, index: int, delta: wire.AnyDelta) -> bytes:
        return _frame(wire.ContentBlockDeltaEvent(index=index, delta=delta), "content_block_delta")

    def _text_delta(self, text: str) -> bytes:
        """The ``text_delta`` frame of the open block, as ``_delta`` would encode it, built from its parts: the
        stream's most frequent frame (tests/unit/protocols pins the bytes to ``_delta``'s)."""
        return b"".join((_TEXT_DELTA_HEAD, str(self.index).encode(), _TEXT_DELTA_MID, _ENCODER.encode(text), b"}}\n\n"))

    def _text_run(self, run: TextRun) -> bytes:
        """The ``text_delta`` frames of a run, as ``_text_delta`` would encode each, from one JSON encode."""
        texts = run.texts
        if run.choice != 0 or not texts:
            return b""
        out = b""
        if self.open_kind != "text":  # the first delta starts the message or opens the text block
            out = self.encode(TextDelta(text=texts[0]))
            texts = texts[1:]
            if not texts:
                return out
        head = b"".join((_TEXT_DELTA_HEAD, str(self.index).encode(), _TEXT_DELTA_MID, b'"'))
        tail = b'"}}\n\n'
        return b"".join((out, head, (tail + head).join(json_string_bodies(texts)), tail))

    # -- events ---------------------------------------------------------------------------------------

    def encode(self, event: StreamEvent) -> bytes:
        if type(event) is TextDelta and self.open_kind == "text" and event.choice == 0 and event.text:
            return self._text_delta(event.text)  # the usual event: more text for the open text block
        if type(event) is TextRun:
            return self._text_run(event)
        if isinstance(event, StreamStart):
            if event.id.startswith("msg_"):
                self.id = event.id
            self.model = event.model or self.model
            return b""
        if isinstance(event, UsageReport):
            self.usage = event.usage
            self.usage_reported = True
            return b""
        if isinstance(event, StreamFailure):
            return self.error(event.error)
        if isinstance(event, RawFrames):
            # The upstream's text deltas go as they are when they continue the text block this stream has open
            # under the same index; otherwise (the encoder numbered its blocks differently) they are rendered.
            if self.open_kind == "text" and self.index == event.block:
                return event.data
            return self._text_run(TextRun(texts=[text for text in event.texts if text]))
        if event.choice != 0:  # Anthropic has a single choice; n > 1 cannot be asked for here
            return b""
        out = self._start()
        if isinstance(event, TextDelta):
            if event.text:
                if self.open_kind != "text":
                    out += self._open("text", wire.AnyBlock(type="text", text=""))
                out += self._text_delta(event.text)
        elif isinstance(event, ReasoningDelta):
            out += self._reasoning(event)
        elif isinstance(event, CitationDelta):
            if self.open_kind != "text":
                out += self._open("text", wire.AnyBlock(type="text", text="", citations=[]))
            out += self._delta(self.index, wire.AnyDelta(type="citations_delta", citation=_citation(event.citation)))
        elif isinstance(event, ServerToolUse):
            use, result = _server_tool_blocks(event.call)
            out += self._open("server_tool_use", msgspec.structs.replace(use, input={}))
            args = _ENCODER.encode(event.call.input).decode()
            out += self._delta(self.index, wire.AnyDelta(type="input_json_delta", partial_json=args))
            out += self._open(result.type, result) + self._close()
        elif isinstance(event, ToolCallStart):
            block = wire.AnyBlock(type="tool_use", id=tool_use_id(event.id, event.signature), name=event.name, input={})
            out += self._open("tool_use", block)
            self.tool_blocks[event.index] = self.index
        elif isinstance(event, ToolCallArgs):
            index = self.tool_blocks.get(event.index)
            if index is not None and event.arguments:
                out += self._delta(index, wire.AnyDelta(type="input_json_delta", partial_json=event.arguments))
        elif isinstance(event, ChoiceEnd):
            out += self._close()
            self.finish_reason = event.finish_reason
            self.stop_sequence = event.stop_sequence
        return out

    def _reasoning(self, event: ReasoningDelta) -> bytes:
        out = b""
        if event.redacted is not None:
            out += self._open("redacted_thinking", wire.AnyBlock(type="redacted_thinking", data=event.redacted))
            out += self._close()
        if event.text:
            # A signed thinking block is complete: more reasoning text starts the next one.
            if self.open_kind != "thinking" or self.signature is not None:
                out += self._open("thinking", wire.AnyBlock(type="thinking", thinking=""))
            out += self._delta(self.index, wire.AnyDelta(type="thinking_delta", thinking=event.text))
        if event.signature is not None:
            if self.open_kind != "thinking":
                out += self._open("thinking", wire.AnyBlock(type="thinking", thinking=""))
            self.signature = event.signature
        return out

    def finish(self, cost: float | None = None) -> bytes:
        out = self._start() + self._close()
        u = wire_usage(self._usage(), cost)
        usage = wire.DeltaUsage(
            output_tokens=u.output_tokens,
            input_tokens=u.input_tokens,
            cache_creation_input_tokens=u.cache_creation_input_tokens,
            cache_read_input_tokens=u.cache_read_input_tokens,
            output_tokens_details=u.output_tokens_details,
            cost=cost,
        )
        reason = stop_reason(self.finish_reason, bool(self.tool_blocks))
        delta = wire.MessageDeltaBody(
            stop_reason=reason, stop_sequence=self.stop_sequence if reason == "stop_sequence" else None
        )
        out += _frame(wire.MessageDeltaEvent(delta=delta, usage=usage), "message_delta")
        return out + _frame(wire.MessageStopEvent(), "message_stop")

    def error(self, err: GatewayError) -> bytes:
        # Anthropic ends a failed stream with a bare ``error`` event; the SDKs raise on it.
        detail = wire.ErrorDetail(type=error_type(err), message=err.message)
        return _frame(wire.ErrorEvent(error=detail), "error")


# --- the protocol ----------------------------------------------------------------------------------------


# ``POST`` with a Messages body without ``max_tokens``: ``{"input_tokens": N}`` (served by server/count_tokens.py).
COUNT_TOKENS_PATHS = ("/v1/messages/count_tokens", "/messages/count_tokens")


class AnthropicMessagesProtocol(InboundProtocol):
    name = "anthropic"
    paths = ("/v1/messages", "/messages")
    # Text deltas of an Anthropic upstream go out as they came (the encoder renders the rest: message start and
    # delta with the usage and cost, block starts and stops, errors).
    stream_format = wire.STREAM_FORMAT

    def parse_request(self, body: bytes, headers: Mapping[str, str]) -> ChatRequest:
        try:
            w = _REQUEST.decode(body)
            _check(w)
            # Unmodelled fields and server tools are decoded only here: invalid UTF-8 in one shows up now.
            extra: dict[str, Any] = {}
            for key, raw in _TOP_LEVEL_KEYS.decode(body).items():
                if key not in wire.MESSAGES_REQUEST_FIELDS:
                    extra[key] = msgspec.json.decode(raw)
            tools = _tools(w.tools, extra) if w.tools else []
            messages = _messages(w)
            response_format, effort = _output_config(extra)
        except msgspec.ValidationError as exc:
            raise _validation_error(exc) from None
        except msgspec.DecodeError as exc:
            raise invalid(f"The request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise invalid("The request body nests arrays and objects too deeply") from None
        tool_choice, parallel = _tool_choice(w.tool_choice)
        req = ChatRequest(
            model=w.model,
            messages=messages,
            stream=bool(w.stream),
            max_tokens=w.max_tokens,
            temperature=w.temperature,
            top_p=w.top_p,
            top_k=w.top_k,
            stop=w.stop_sequences or [],
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel,
            response_format=response_format,
            reasoning=_reasoning(w.thinking, effort),
            user=opaque_user_id(w.metadata.user_id) if w.metadata is not None else None,
            betas=betas(headers),
            extra=extra,
            inbound_protocol=self.name,
            options=w.omnirelay or {},
        )
        check_nesting(req)
        return req

    def render_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        choice = (
            resp.choices[0]
            if resp.choices
            else Choice(index=0, message=Message(role="assistant"), finish_reason="stop")
        )
        reason = stop_reason(choice.finish_reason, bool(choice.message.tool_calls))
        out = wire.MessageResponse(
            id=message_id(resp.id),
            model=resp.model or req.model,
            content=_blocks(choice.message),
            stop_reason=reason,
            stop_sequence=choice.stop_sequence if reason == "stop_sequence" else None,
            usage=wire_usage(resp.usage, resp.cost),
        )
        return _ENCODER.encode(out)

    def stream_encoder(self, req: ChatRequest) -> StreamEncoder:
        return AnthropicStreamEncoder(req)

    def render_error(self, err: GatewayError) -> bytes:
        detail = wire.ErrorDetail(type=error_type(err), message=err.message)
        return _ENCODER.encode(wire.ErrorBody(type="error", error=detail))


PROTOCOL = AnthropicMessagesProtocol()
