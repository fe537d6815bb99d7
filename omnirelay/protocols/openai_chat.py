"""Inbound OpenAI Chat Completions: the wire format of ``omnirelay.wire.openai_chat`` <-> the canonical core.

A tool call's opaque upstream signature (``ToolCall.signature``: Gemini's thought signature) is shown as
Gemini's own OpenAI-compatible API shows it, ``extra_content: {"google": {"thought_signature": ...}}`` on the
tool call (in the call's first stream delta), and read back from the same place in the history.

Streams open with ``{"role": "assistant", "content": ""}`` when the answer starts with text and with
``"content": null`` (the role riding on the first delta) when it starts with a tool call or reasoning, as
OpenAI's (and DeepSeek's) do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
from msgspec import UNSET

from omnirelay.core.errors import ErrorKind, GatewayError, invalid
from omnirelay.core.events import (
    ChoiceEnd,
    CitationDelta,
    RawFrames,
    ReasoningDelta,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    TextRun,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.ids import new_id, now
from omnirelay.core.types import (
    ChatRequest,
    ChatResponse,
    Citation,
    FinishReason,
    ImagePart,
    Message,
    Part,
    Reasoning,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from omnirelay.protocols.base import DATA_URL, InboundProtocol, StreamEncoder, check_nesting, decode_openai_body
from omnirelay.wire import openai_chat as wire
from omnirelay.wire.sse import encode_event

_encoder = msgspec.json.Encoder()
_request_decoder = msgspec.json.Decoder(wire.ChatCompletionRequest)
_keys_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])

# Top-level request fields translated into ChatRequest; every other field is passthrough (``extra``).
_MAPPED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "user",
        "omnirelay",
    }
)

_FINISH: dict[FinishReason, str] = {
    "stop": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "error": "stop",  # OpenAI has no error finish reason; the error itself travels separately
}

# kind -> (OpenAI error type, default code)
_ERROR_TYPES: dict[ErrorKind, tuple[str, str | None]] = {
    "invalid_request": ("invalid_request_error", None),
    "authentication": ("authentication_error", "invalid_api_key"),
    "permission": ("permission_error", None),
    "not_found": ("not_found_error", "model_not_found"),
    "too_large": ("invalid_request_error", "request_too_large"),
    "rate_limit": ("rate_limit_error", "rate_limit_exceeded"),
    "quota": ("insufficient_quota", "insufficient_quota"),
    "upstream": ("upstream_error", None),
    "overloaded": ("server_error", "overloaded"),
    "timeout": ("timeout", "timeout"),
    "internal": ("server_error", None),
}

# -- request -------------------------------------------------------------------------------------------


def _image_part(image: wire.ImageURL, param: str) -> ImagePart:
    detail = image.detail if image.detail is not UNSET else None
    url = image.url
    if not url.startswith("data:"):
        if not url.startswith(("http://", "https://")):
            raise invalid("image_url.url must be an http(s) URL or a base64 data: URL", param=param)
        return ImagePart(url=url, detail=detail)
    match = DATA_URL.match(url)
    if match is None or not match.group(3):
        raise invalid("image data: URLs must be base64 encoded (data:<media type>;base64,<data>)", param=param)
    return ImagePart(data=match.group(3), media_type=match.group(1) or "image/png", detail=detail)


def _parts(content: str | list[wire.ContentPart] | None, param: str, images: bool) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [TextPart(text=content)]
    out: list[Part] = []
    for j, part in enumerate(content):
        if isinstance(part, wire.TextContent):
            out.append(TextPart(text=part.text))
        elif isinstance(part, wire.RefusalContent):
            out.append(TextPart(text=part.refusal))
        elif isinstance(part, wire.ImageURLContent) and images:
            out.append(_image_part(part.image_url, f"{param}[{j}].image_url.url"))
        else:
            kind = type(part).__struct_config__.tag
            raise invalid(f"content parts of type '{kind}' are not supported here", param=f"{param}[{j}].type")
    return out


def _message(m: wire.ChatMessage, i: int) -> Message:
    param = f"messages[{i}].content"
    if m.role == "tool":
        if not m.tool_call_id:
            raise invalid("tool messages need a tool_call_id", param=f"messages[{i}].tool_call_id")
        return Message(
            role="tool", content=_parts(m.content, param, images=False), tool_call_id=m.tool_call_id, name=m.name
        )
    if m.role == "assistant":
        calls = [
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments, signature=call_signature(c))
            for c in m.tool_calls or ()
        ]
        content = _parts(m.content, param, images=False)
        if m.refusal and not content:
            content = [TextPart(text=m.refusal)]
        reasoning = [ReasoningPart(text=m.reasoning_content)] if m.reasoning_content else []
        if not content and not calls and not reasoning and m.content is None:
            raise invalid("assistant messages need content or tool_calls", param=param)
        return Message(role="assistant", content=content, tool_calls=calls, reasoning=reasoning, name=m.name)
    if m.content is None:
        raise invalid(f"{m.role} messages need content", param=param)
    return Message(role=m.role, content=_parts(m.content, param, images=m.role == "user"), name=m.name)


def call_signature(call: wire.ToolCall) -> str | None:
    """The thought signature a client sent back on a tool call (``extra_content.google.thought_signature``)."""
    extra = call.extra_content
    if not isinstance(extra, dict):
        return None
    google = extra.get("google")
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def signature_extra(signature: str | None) -> dict[str, Any] | msgspec.UnsetType:
    return {"google": {"thought_signature": signature}} if signature else UNSET


def _tool_choice(tc: wire.ToolChoiceMode | wire.NamedToolChoice | None) -> ToolChoice | None:
    if tc is None:
        return None
    if isinstance(tc, str):
        return ToolChoice(mode=tc)
    return ToolChoice(mode="tool", name=tc.function.name)


def _response_format(rf: wire.ResponseFormat | None) -> ResponseFormat | None:
    if rf is None:
        return None
    if isinstance(rf, wire.ResponseFormatJSONSchema):
        spec = rf.json_schema
        return ResponseFormat(
            type="json_schema", name=spec.name, schema=spec.schema, strict=spec.strict, description=spec.description
        )
    if isinstance(rf, wire.ResponseFormatJSONObject):
        return ResponseFormat(type="json_object")
    return ResponseFormat(type="text")


def _reasoning(effort: wire.ReasoningEffort | None) -> Reasoning | None:
    if effort is None:
        return None
    if effort == "none":
        return Reasoning(enabled=False)
    return Reasoning(effort=effort)


def _extras(body: bytes) -> dict[str, Any]:
    keys = _keys_decoder.decode(body)
    return {k: msgspec.json.decode(v) for k, v in keys.items() if k not in _MAPPED_FIELDS}


def _parse_request(body: bytes) -> ChatRequest:
    r = _request_decoder.decode(body)
    if not r.model:
        raise invalid("model must not be empty", param="model")
    if not r.messages:
        raise invalid("messages must contain at least one message", param="messages")
    messages = [_message(m, i) for i, m in enumerate(r.messages)]
    max_tokens = r.max_completion_tokens if r.max_completion_tokens is not None else r.max_tokens
    stop = [r.stop] if isinstance(r.stop, str) else list(r.stop or ())
    extra = _extras(body)
    return ChatRequest(
        model=r.model,
        messages=messages,
        stream=bool(r.stream),
        include_usage=bool(r.stream and r.stream_options and r.stream_options.include_usage),
        max_tokens=max_tokens,
        temperature=r.temperature,
        top_p=r.top_p,
        top_k=r.top_k,
        stop=stop,
        n=r.n or 1,
        seed=r.seed,
        presence_penalty=r.presence_penalty,
        frequency_penalty=r.frequency_penalty,
        tools=[
            Tool(
                name=t.function.name,
                description=t.function.description,
                parameters=t.function.parameters or {},
                strict=t.function.strict,
            )
            for t in r.tools or ()
        ],
        tool_choice=_tool_choice(r.tool_choice),
        parallel_tool_calls=r.parallel_tool_calls,
        response_format=_response_format(r.response_format),
        reasoning=_reasoning(r.reasoning_effort),
        user=r.user,
        extra=extra,
        inbound_protocol="openai",
        options=r.omnirelay or {},
    )


# -- response ------------------------------------------------------------------------------------------


def _usage(usage: Usage, cost: float | None) -> wire.CompletionUsage:
    return wire.CompletionUsage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=wire.PromptTokensDetails(cached_tokens=usage.cached_tokens),
        completion_tokens_details=wire.CompletionTokensDetails(reasoning_tokens=usage.reasoning_tokens),
        cost=cost if cost is not None else UNSET,
    )


def _annotation(c: Citation) -> dict[str, Any]:
    return {
        "type": "url_citation",
        "url_citation": {"start_index": c.start_index, "end_index": c.end_index, "url": c.url, "title": c.title},
    }


def _response_message(msg: Message) -> wire.ResponseMessage:
    text = msg.text()
    reasoning = "".join(r.text for r in msg.reasoning)
    calls = [
        wire.ToolCall(
            id=c.id,
            function=wire.FunctionCall(name=c.name, arguments=c.arguments),
            extra_content=signature_extra(c.signature),
        )
        for c in msg.tool_calls
    ]
    return wire.ResponseMessage(
        content=text if text or not calls else None,
        reasoning_content=reasoning if reasoning else UNSET,
        tool_calls=calls if calls else UNSET,
        annotations=[_annotation(c) for c in msg.citations],
    )


def _error_detail(err: GatewayError) -> wire.ErrorDetail:
    err_type, default_code = _ERROR_TYPES.get(err.kind, ("server_error", None))
    return wire.ErrorDetail(message=err.message, type=err_type, param=err.param, code=err.code or default_code)


# -- stream --------------------------------------------------------------------------------------------

_DONE = b"data: [DONE]\n\n"
_NO_DELTA = wire.Delta()


class OpenAIStreamEncoder(StreamEncoder):
    """Canonical events -> ``chat.completion.chunk`` frames. The first frame of each choice carries the role,
    as OpenAI's does; usage goes in a last frame with ``choices: []`` only when the caller asked for it."""

    __slots__ = ("created", "id", "include_usage", "model", "opened", "usage")

    def __init__(self, req: ChatRequest) -> None:
        self.id = new_id("chatcmpl-")
        self.model = req.model
        self.created = now()
        self.include_usage = req.include_usage
        self.opened: set[int] = set()
        self.usage = Usage()

    def _chunk(self, choice: int, delta: wire.Delta, finish: str | None = None) -> bytes:
        out = b""
        if choice not in self.opened:
            self.opened.add(choice)
            if delta.role is UNSET and (delta.tool_calls is not UNSET or delta.reasoning_content is not UNSET):
                # A turn that opens with a tool call or reasoning: the role rides on it, with content null.
                delta = msgspec.structs.replace(delta, role="assistant", content=None)
            elif delta.role is UNSET:
                out = self._frame([wire.ChunkChoice(index=choice, delta=wire.Delta(role="assistant", content=""))])
        return out + self._frame([wire.ChunkChoice(index=choice, delta=delta, finish_reason=finish)])

    def _frame(self, choices: list[wire.ChunkChoice], usage: wire.CompletionUsage | None = None) -> bytes:
        chunk = wire.ChatCompletionChunk(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=choices,
            usage=usage if self.include_usage else UNSET,
        )
        return encode_event(_encoder.encode(chunk))

    def _texts(self, choice: int, texts: list[str]) -> bytes:
        """One content chunk per text (after the choice's role frame, if it is new)."""
        return b"".join([self._chunk(choice, wire.Delta(content=text)) for text in texts if text])

    def encode(self, event: StreamEvent) -> bytes:
        if type(event) is RawFrames:  # the upstream's own chunks of a choice this stream has opened go as they are
            if event.block in self.opened:
                return event.data
            return self._texts(event.block, event.texts)
        if isinstance(event, TextDelta):
            if not event.text:
                return b""
            return self._chunk(event.choice, wire.Delta(content=event.text))
        if type(event) is TextRun:  # not this format's own frames (those come as RawFrames)
            return self._texts(event.choice, event.texts)
        if isinstance(event, ReasoningDelta):
            if not event.text:
                return b""  # signatures and redacted blocks have no place in this format
            return self._chunk(event.choice, wire.Delta(reasoning_content=event.text))
        if isinstance(event, ToolCallStart):
            call = wire.ToolCallDelta(
                index=event.index,
                id=event.id,
                type="function",
                function=wire.FunctionDelta(name=event.name, arguments=""),
                extra_content=signature_extra(event.signature),
            )
            return self._chunk(event.choice, wire.Delta(tool_calls=[call]))
        if isinstance(event, ToolCallArgs):
            if not event.arguments:
                return b""
            call = wire.ToolCallDelta(index=event.index, function=wire.FunctionDelta(arguments=event.arguments))
            return self._chunk(event.choice, wire.Delta(tool_calls=[call]))
        if isinstance(event, ChoiceEnd):
            return self._chunk(event.choice, _NO_DELTA, _FINISH.get(event.finish_reason, "stop"))
        if isinstance(event, CitationDelta):
            return self._chunk(event.choice, wire.Delta(annotations=[_annotation(event.citation)]))
        if isinstance(event, UsageReport):
            self.usage = event.usage
            return b""
        if isinstance(event, StreamStart):
            self.id = event.id if event.id.startswith("chatcmpl") else "chatcmpl-" + event.id
            self.model = event.model or self.model
            self.created = event.created or self.created
            return b""  # the role frame waits for the first content, to say whether it is text or a tool call
        if isinstance(event, StreamFailure):
            return self.error(event.error)
        return b""

    def finish(self, cost: float | None = None) -> bytes:
        out = b""
        if self.include_usage:
            out = self._frame([], _usage(self.usage, cost))
        return out + _DONE

    def error(self, err: GatewayError) -> bytes:
        # The openai SDK raises APIError on a data frame whose JSON has an "error" member.
        body = _encoder.encode(wire.ErrorResponse(error=_error_detail(err)))
        return encode_event(body) + _DONE


class OpenAIChatProtocol(InboundProtocol):
    name: ClassVar[str] = "openai"
    paths: ClassVar[tuple[str, ...]] = ("/v1/chat/completions", "/chat/completions")
    # Frames of a chat-completions upstream go out as they came (the encoder renders the parsed ones: the usage
    # frame with the cost, finish, errors and the terminator).
    stream_format: ClassVar[str | None] = wire.STREAM_FORMAT

    def parse_request(self, body: bytes, headers: Mapping[str, str]) -> ChatRequest:
        req = decode_openai_body(_parse_request, body)
        check_nesting(req)
        return req

    def render_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        completion = wire.ChatCompletion(
            id=resp.id if resp.id.startswith("chatcmpl") else "chatcmpl-" + resp.id,
            created=resp.created or now(),
            model=resp.model or req.model,
            choices=[
                wire.Choice(
                    index=c.index,
                    message=_response_message(c.message),
                    finish_reason=_FINISH.get(c.finish_reason, "stop"),
                )
                for c in resp.choices
            ],
            usage=_usage(resp.usage, resp.cost),
        )
        return _encoder.encode(completion)

    def stream_encoder(self, req: ChatRequest) -> StreamEncoder:
        return OpenAIStreamEncoder(req)

    def render_error(self, err: GatewayError) -> bytes:
        return _encoder.encode(wire.ErrorResponse(error=_error_detail(err)))


PROTOCOL = OpenAIChatProtocol()
