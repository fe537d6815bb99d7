"""Anthropic Messages API (``POST /v1/messages``, ``anthropic-version: 2023-06-01``) wire shapes.

Request content blocks are a tagged union on ``type`` so a malformed block is rejected with the path of the
offending field. Response blocks and stream deltas use one permissive struct each (``AnyBlock``,
``AnyDelta``): Anthropic adds block types over time (server tool results, citations, ...) and a reply must
never fail to decode because of one; with ``omit_defaults`` the same structs encode to the exact shapes.
Reference: https://docs.anthropic.com/en/api/messages and /en/docs/build-with-claude/streaming
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


class _Tagged(_Wire, tag_field="type"):
    pass


# --- request content blocks --------------------------------------------------------------------------------


class Base64Source(_Tagged, tag="base64"):
    media_type: str
    data: str


class UrlSource(_Tagged, tag="url"):
    url: str


class FileSource(_Tagged, tag="file"):
    file_id: str


ImageSource = Base64Source | UrlSource | FileSource


class TextBlock(_Tagged, tag="text"):
    text: str
    cache_control: dict[str, Any] | None = None
    citations: list[dict[str, Any]] | None = None


class ImageBlock(_Tagged, tag="image"):
    source: ImageSource
    cache_control: dict[str, Any] | None = None


class DocumentBlock(_Tagged, tag="document"):
    # Sources vary (base64 PDF, url, plain text, content blocks, file id): kept as given.
    source: dict[str, Any]
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None
    cache_control: dict[str, Any] | None = None


class ToolUseBlock(_Tagged, tag="tool_use"):
    id: str
    name: str
    input: dict[str, Any]
    cache_control: dict[str, Any] | None = None


ToolResultContent = TextBlock | ImageBlock | DocumentBlock


class ToolResultBlock(_Tagged, tag="tool_result"):
    tool_use_id: str
    content: str | list[ToolResultContent] | None = None
    is_error: bool | None = None
    cache_control: dict[str, Any] | None = None


class ThinkingBlock(_Tagged, tag="thinking"):
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(_Tagged, tag="redacted_thinking"):
    data: str


class ServerToolUseBlock(_Tagged, tag="server_tool_use"):
    """A server tool call (web search, fetch, code execution) from an earlier assistant turn, sent back."""

    id: str
    name: str
    input: Any = None


class _ServerToolResult(_Tagged):
    tool_use_id: str
    content: Any = None


class WebSearchToolResultBlock(_ServerToolResult, tag="web_search_tool_result"):
    pass


class WebFetchToolResultBlock(_ServerToolResult, tag="web_fetch_tool_result"):
    pass


class CodeExecutionToolResultBlock(_ServerToolResult, tag="code_execution_tool_result"):
    pass


ServerToolResultBlock = WebSearchToolResultBlock | WebFetchToolResultBlock | CodeExecutionToolResultBlock

ContentBlock = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | ServerToolUseBlock
    | WebSearchToolResultBlock
    | WebFetchToolResultBlock
    | CodeExecutionToolResultBlock
)


class MessageParam(_Wire):
    # "system": a mid-conversation system message (beta ``mid-conversation-system-2026-04-07``); text only.
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


# --- request options ---------------------------------------------------------------------------------------


class ToolDef(_Wire):
    """A client tool. Server tools (``web_search_20250305``, ...) carry a ``type`` and other fields and are
    passed through as raw JSON, which is why ``MessagesRequest.tools`` holds ``msgspec.Raw``."""

    name: str
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None  # absent or "custom" for client tools
    cache_control: dict[str, Any] | None = None


class ToolChoiceAuto(_Tagged, tag="auto"):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Tagged, tag="any"):
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Tagged, tag="tool"):
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Tagged, tag="none"):
    pass


ToolChoice = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


class ThinkingEnabled(_Tagged, tag="enabled"):
    budget_tokens: int
    display: str | None = None


class ThinkingDisabled(_Tagged, tag="disabled"):
    pass


class ThinkingAdaptive(_Tagged, tag="adaptive"):
    display: str | None = None


ThinkingConfig = ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive


class OutputConfig(_Wire):
    """``output_config``: ``format`` is ``{"type": "json_schema", "schema": {...}}`` (structured output),
    ``effort`` one of low / medium / high / max. Decoded only to translate it; an Anthropic upstream receives
    the caller's object verbatim, unknown keys included."""

    format: dict[str, Any] | None = None
    effort: str | None = None


class Metadata(_Wire):
    user_id: str | None = None


class MessagesRequest(_Wire):
    model: str
    messages: list[MessageParam]
    max_tokens: int
    system: str | list[TextBlock] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    metadata: Metadata | None = None
    tools: list[msgspec.Raw] | None = None  # ToolDef JSON, or a server tool passed through verbatim
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    omnirelay: dict[str, Any] | None = None  # the gateway's own per-request options; never sent upstream


MESSAGES_REQUEST_FIELDS = frozenset(MessagesRequest.__struct_fields__)


# --- response -------------------------------------------------------------------------------------------


class AnyBlock(_Wire):
    """A response content block of any ``type``: text, tool_use, thinking, redacted_thinking, or one this
    gateway does not model (decoded and ignored)."""

    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    citations: list[dict[str, Any]] | None = None
    tool_use_id: str | None = None  # web_search_tool_result
    # web_search_tool_result: the search results; web_fetch / code_execution tool results: one object
    content: list[dict[str, Any]] | dict[str, Any] | None = None


class OutputTokensDetails(_Wire):
    thinking_tokens: int


class Usage(_Wire):
    # Required, so omit_defaults never drops them: the SDKs expect both on every usage object.
    input_tokens: int  # excludes cache reads and writes
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: OutputTokensDetails | None = None
    service_tier: str | None = None
    cost: float | None = None  # omnirelay's addition: USD; SDKs keep unknown fields


class MessageResponse(msgspec.Struct, kw_only=True):
    # Not omit_defaults: stop_reason and stop_sequence are always present, null until known.
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[AnyBlock]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage


# --- streaming events --------------------------------------------------------------------------------------


class AnyDelta(_Wire):
    """``text_delta`` (text), ``input_json_delta`` (partial_json), ``thinking_delta`` (thinking),
    ``signature_delta`` (signature), ``citations_delta`` (citation)."""

    type: str
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    signature: str | None = None
    citation: dict[str, Any] | None = None


class MessageDeltaBody(msgspec.Struct, kw_only=True):
    stop_reason: str | None = None
    stop_sequence: str | None = None


class DeltaUsage(_Wire):
    """Cumulative totals; only ``output_tokens`` is always present."""

    output_tokens: int
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: OutputTokensDetails | None = None
    cost: float | None = None  # omnirelay's addition


class MessageStartEvent(_Tagged, tag="message_start"):
    message: MessageResponse


class ContentBlockStartEvent(_Tagged, tag="content_block_start"):
    index: int
    content_block: AnyBlock


class ContentBlockDeltaEvent(_Tagged, tag="content_block_delta"):
    index: int
    delta: AnyDelta


class ContentBlockStopEvent(_Tagged, tag="content_block_stop"):
    index: int


class MessageDeltaEvent(_Tagged, tag="message_delta"):
    delta: MessageDeltaBody
    usage: DeltaUsage


class MessageStopEvent(_Tagged, tag="message_stop"):
    pass


class PingEvent(_Tagged, tag="ping"):
    pass


class ErrorDetail(msgspec.Struct, kw_only=True):
    type: str
    message: str


class ErrorEvent(_Tagged, tag="error"):
    error: ErrorDetail


StreamEvent = (
    MessageStartEvent
    | ContentBlockStartEvent
    | ContentBlockDeltaEvent
    | ContentBlockStopEvent
    | MessageDeltaEvent
    | MessageStopEvent
    | PingEvent
    | ErrorEvent
)

STREAM_EVENT_TYPES = frozenset(
    (
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    )
)


# --- errors ----------------------------------------------------------------------------------------------


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``."""

    type: str  # "error"; no default, so omit_defaults keeps it
    error: ErrorDetail
    request_id: str | None = None


# --- models (``GET /v1/models``) ----------------------------------------------------------------------------


class ModelInfo(msgspec.Struct, kw_only=True):
    id: str
    display_name: str
    created_at: str  # RFC 3339
    type: str = "model"


class ModelPage(msgspec.Struct, kw_only=True):
    """One page of the model list; ``first_id``/``last_id`` are null when it is empty."""

    data: list[ModelInfo]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


# The name of this family's stream format (Messages SSE): a protocol and a provider that both declare it can pass
# frames through unchanged (providers/passthrough.py).
STREAM_FORMAT = "anthropic_messages"
