"""The canonical request and response: what every inbound protocol parses into and every provider reads from.

Conventions chosen so that nothing is lost between the wire formats:

* System text stays in the message list (role ``system``/``developer``) where the caller put it; providers
  whose wire format has a single top-level system field hoist it.
* Tool results are their own messages (role ``tool``), as in OpenAI; providers that carry them as content
  blocks (Anthropic, Gemini) group consecutive tool messages.
* Tool-call arguments are JSON text, as OpenAI carries them, so partial streamed arguments need no re-encoding.
* ``Usage.input_tokens`` counts every prompt token, cached reads and cache writes included (OpenAI's
  semantics); the Anthropic protocol subtracts the cache fields when it renders.
* ``Usage.output_tokens`` counts every generated token, reasoning included.
* A system message may stand anywhere in the list (Anthropic's mid-conversation system messages); each
  ``TextPart`` of it is one block, and providers keep the block boundaries (never a bare concatenation).
* A tool result's content is a list of parts like any message's: text, images and documents (PDFs travel as
  an ``ImagePart`` with media type ``application/pdf``); ``is_error`` marks a failed tool run.
* ``cache_control`` (on text and image parts, tools, and a tool result via ``Message.cache_control``) is an
  opaque prompt-caching marker: providers with explicit cache breakpoints send it, the others ignore it.
* ``ToolCall.signature`` is a provider's opaque per-call state that must come back with the call in the next
  turn (Gemini's thought signature); inbound protocols carry it to their clients and back unchanged.
* ``Reasoning.adaptive`` means "the model decides how much to think"; ``effort`` may accompany it as a hint.
* ``ChatRequest.betas`` are the caller's feature flags (Anthropic ``anthropic-beta``): forwarded to an
  upstream of that family, translated or ignored by the others.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Role = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason = Literal["stop", "stop_sequence", "length", "tool_calls", "content_filter", "error"]
Effort = Literal["minimal", "low", "medium", "high"]


class TextPart(msgspec.Struct, tag="text", kw_only=True):
    text: str
    # Anthropic prompt-caching marker, kept so an Anthropic upstream receives it back unchanged.
    cache_control: dict[str, Any] | None = None


class ImagePart(msgspec.Struct, tag="image", kw_only=True):
    """An image given either by ``url`` (http/https) or inline as base64 ``data`` with its ``media_type``."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None
    cache_control: dict[str, Any] | None = None


Part = TextPart | ImagePart


class ToolCall(msgspec.Struct, kw_only=True):
    id: str
    name: str
    arguments: str  # JSON text
    # Opaque state the upstream attached to this call and needs back with it (Gemini ``thoughtSignature``).
    signature: str | None = None


class ReasoningPart(msgspec.Struct, kw_only=True):
    """Visible reasoning. ``signature``/``redacted`` carry Anthropic's opaque data so a multi-turn tool loop
    with extended thinking can send the blocks back verbatim."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None


class Citation(msgspec.Struct, kw_only=True):
    """A cited source for a span of a message's text: ``start_index``/``end_index`` are character offsets into
    the message's concatenated text content (OpenAI ``url_citation``); ``cited_text`` is the quoted passage
    (Anthropic citations)."""

    url: str
    title: str = ""
    start_index: int = 0
    end_index: int = 0
    cited_text: str = ""


class SearchResultRef(msgspec.Struct, kw_only=True):
    url: str
    title: str = ""
    page_age: str | None = None


class ServerToolCall(msgspec.Struct, kw_only=True):
    """A tool the gateway ran itself (web search, fetch, python) while producing this message: shown to
    Anthropic clients as ``server_tool_use`` + ``web_search_tool_result`` / ``web_fetch_tool_result`` /
    ``code_execution_tool_result`` blocks."""

    id: str
    name: str
    input: dict[str, Any] = {}
    results: list[SearchResultRef] = []
    # The tool loop's fetch and python: the page text or program output, and why the call failed, if it did.
    output: str = ""
    stderr: str = ""
    return_code: int | None = None
    error: str | None = None


class Message(msgspec.Struct, kw_only=True):
    role: Role
    content: list[Part] = []
    tool_calls: list[ToolCall] = []
    tool_call_id: str | None = None  # set on role == "tool"
    name: str | None = None  # tool name on role == "tool" (Gemini needs it); participant name otherwise
    is_error: bool = False  # a tool result that reports a failure
    cache_control: dict[str, Any] | None = None  # on role == "tool": the tool_result block's caching marker
    reasoning: list[ReasoningPart] = []
    # Filled by the gateway's own compound models only; providers ignore them.
    citations: list[Citation] = []
    server_tools: list[ServerToolCall] = []

    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


class Tool(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] = {}
    strict: bool | None = None
    cache_control: dict[str, Any] | None = None


class ToolChoice(msgspec.Struct, kw_only=True):
    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None  # with mode == "tool"


class ResponseFormat(msgspec.Struct, kw_only=True):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class Reasoning(msgspec.Struct, kw_only=True):
    """What the caller asked for. ``enabled`` False means reasoning explicitly turned off; ``adaptive`` True
    means the model chooses its own amount (Anthropic ``thinking: adaptive``, Gemini's dynamic budget), with
    ``effort`` as an optional hint."""

    effort: Effort | None = None
    budget_tokens: int | None = None
    enabled: bool = True
    adaptive: bool = False


class ChatRequest(msgspec.Struct, kw_only=True):
    model: str
    messages: list[Message]
    stream: bool = False
    include_usage: bool = False  # OpenAI stream_options.include_usage; omnirelay always tracks usage itself
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = []
    n: int = 1
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    tools: list[Tool] = []
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning: Reasoning | None = None
    user: str | None = None
    betas: list[str] = []  # Anthropic ``anthropic-beta`` flags, in the caller's order
    # Fields the inbound protocol did not model, forwarded verbatim only to a provider that speaks the same
    # wire family, e.g. OpenAI ``logprobs`` or Anthropic ``metadata``.
    extra: dict[str, Any] = {}
    # The name of the protocol the request came in by ("openai", "anthropic"): the wire family of ``extra``,
    # and what decides how server-side tool runs are shown to the caller.
    inbound_protocol: str | None = None
    # omnirelay's own per-request settings (the ``omnirelay`` object in the body): fallbacks, compound modes.
    options: dict[str, Any] = {}


class Usage(msgspec.Struct, kw_only=True):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_tokens += other.cached_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.reasoning_tokens += other.reasoning_tokens


class Choice(msgspec.Struct, kw_only=True):
    index: int
    message: Message
    finish_reason: FinishReason
    stop_sequence: str | None = None


class ChatResponse(msgspec.Struct, kw_only=True):
    id: str
    model: str
    created: int
    choices: list[Choice]
    usage: Usage
    # Set by the gateway after the call: the cost in USD, and who answered.
    cost: float | None = None
