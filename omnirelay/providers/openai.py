"""Upstream OpenAI Chat Completions: OpenAI itself and every OpenAI-compatible server (xAI, DeepSeek, Mistral,
vLLM, Ollama, llama.cpp server, anything else with a base URL).

Servers differ in small ways (which max-tokens field, which models take ``reasoning_effort``, what they
reject). Those differences are data: one ``Preset`` per server kind with ``ModelRule``s for model-specific
quirks, looked up once per request. Any preset field can be overridden from the upstream's ``options``.

Translation choices where the canonical request carries more than Chat Completions can say:

* System/developer messages stay where they are in the list. A message of several text blocks is sent as a
  list of text parts (or, for servers without content parts, the blocks joined by a blank line), never glued.
* A tool call's signature (``ToolCall.signature``) is read from ``extra_content.google.thought_signature``,
  as Gemini's OpenAI-compatible API returns it, and sent back there only to presets with ``call_signatures``
  (``gemini-openai``).
* A tool message carries text only, so the images and documents of a tool result are sent in a user message
  right after the run of tool messages, opened by a text part naming the call they came from
  (``Content returned by tool call <id>:``). A failed tool's output is prefixed ``Error: `` (``is_error``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET

from omnirelay.core.embeddings import EmbeddingRequest, EmbeddingResponse
from omnirelay.core.errors import GatewayError, invalid, retry_after_header, upstream_status_error
from omnirelay.core.events import (
    ChoiceEnd,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextRun,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.ids import new_id, now
from omnirelay.core.image_gen import ImageRequest, ImageResult
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
from omnirelay.providers.base import (
    CHAT,
    EMBEDDINGS,
    IMAGES,
    Capability,
    HttpProvider,
    StreamParser,
    UpstreamRequest,
    cannot_embed,
    openai_error_fields,
)
from omnirelay.providers.openai_embeddings import embeddings_body, parse_embeddings_reply
from omnirelay.providers.openai_images import image_body, parse_images
from omnirelay.providers.passthrough import FrameRelay, plain_segments
from omnirelay.wire import openai_chat as wire
from omnirelay.wire.sse import SSEDecoder

if TYPE_CHECKING:
    from omnirelay.config import UpstreamConfig


class ModelRule(msgspec.Struct, frozen=True, kw_only=True):
    """Quirks of the models whose upstream name starts with one of ``prefixes`` (first matching rule wins)."""

    prefixes: tuple[str, ...]
    reasoning_effort: bool = False  # the model accepts ``reasoning_effort``
    effort_values: dict[str, str] = {}  # canonical effort -> the value this model accepts
    drop: frozenset[str] = frozenset()  # request fields the model rejects


class Preset(msgspec.Struct, frozen=True, kw_only=True):
    base_url: str | None
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    seed_field: str = "seed"
    stream_usage: bool = True  # accepts stream_options.include_usage
    reasoning_effort: bool = False  # default for models no rule matches
    developer_role: bool = False  # understands role "developer" (else sent as "system")
    reasoning_input: bool = False  # accepts earlier turns' reasoning back as ``reasoning_content``
    content_parts: bool = True  # accepts content as a list of parts (else text only, as one string)
    message_names: bool = True  # accepts ``name`` on messages
    tool_call_ids: Literal["any", "alnum9"] = "any"
    # Sends a tool call's signature back as ``extra_content.google.thought_signature`` (Gemini's
    # OpenAI-compatible API requires it on Gemini 3); other servers may reject the unknown field.
    call_signatures: bool = False
    top_k: bool = False
    drop: frozenset[str] = frozenset()
    rules: tuple[ModelRule, ...] = ()
    embeddings: bool = True  # serves ``/embeddings``
    embeddings_base64: bool = False  # sends vectors as base64 when asked (else floats are asked for)
    dimensions_field: str | None = "dimensions"  # the request field for the vector length (None: not sent)


# The presets whose servers have ``POST /images/generations`` (OpenAI's, xAI's grok-2-image; "custom": any
# OpenAI-compatible server the operator points at).
IMAGE_PRESETS = frozenset({"openai", "xai", "custom"})

_SAMPLING = frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs"})
_NO_RULE = ModelRule(prefixes=())

PRESETS: dict[str, Preset] = {
    "openai": Preset(
        base_url="https://api.openai.com/v1",
        max_tokens_field="max_completion_tokens",
        developer_role=True,
        embeddings_base64=True,
        rules=(
            ModelRule(prefixes=("gpt-5-chat",)),
            # Reasoning models: effort instead of sampling controls, which they reject.
            ModelRule(
                prefixes=("o1", "o3", "o4"),
                reasoning_effort=True,
                effort_values={"minimal": "low"},
                drop=_SAMPLING | {"logit_bias"},
            ),
            ModelRule(prefixes=("gpt-5",), reasoning_effort=True, drop=_SAMPLING | {"logit_bias"}),
        ),
    ),
    "xai": Preset(
        base_url="https://api.x.ai/v1",
        max_tokens_field="max_completion_tokens",
        embeddings=False,
        rules=(
            ModelRule(
                prefixes=("grok-3-mini",),
                reasoning_effort=True,
                effort_values={"minimal": "low", "medium": "low"},  # grok-3-mini knows only low and high
            ),
            # Grok 4 always reasons and rejects the effort knob, penalties and stop sequences.
            ModelRule(
                prefixes=("grok-4",),
                drop=frozenset({"reasoning_effort", "presence_penalty", "frequency_penalty", "stop"}),
            ),
        ),
    ),
    "deepseek": Preset(
        base_url="https://api.deepseek.com",
        content_parts=False,
        embeddings=False,
        rules=(ModelRule(prefixes=("deepseek-reasoner",), drop=frozenset({"logprobs", "top_logprobs"})),),
    ),
    "mistral": Preset(
        base_url="https://api.mistral.ai/v1",
        seed_field="random_seed",
        stream_usage=False,  # usage arrives in the last chunk unasked; the field is rejected as extra input
        message_names=False,
        tool_call_ids="alnum9",
        drop=frozenset({"user"}),
        dimensions_field="output_dimension",  # codestral-embed; mistral-embed has one fixed length
    ),
    "vllm": Preset(base_url="http://127.0.0.1:8000/v1", reasoning_effort=True, reasoning_input=True, top_k=True),
    "ollama": Preset(base_url="http://127.0.0.1:11434/v1", reasoning_effort=True, reasoning_input=True),
    "llamacpp": Preset(base_url="http://127.0.0.1:8080/v1", reasoning_input=True, top_k=True),
    "gemini-openai": Preset(
        base_url="https://generativelanguage.googleapis.com/v1beta/openai",
        reasoning_effort=True,
        call_signatures=True,
        message_names=False,
    ),
    "custom": Preset(base_url=None, reasoning_effort=True),
}

TEXT_BLOCK_SEPARATOR = "\n\n"
TOOL_ERROR_PREFIX = "Error: "

# Request fields the gateway itself consumes (OpenRouter-style fallback list); never forwarded.
_GATEWAY_FIELDS = frozenset({"models"})

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
    "eos": "stop",
}

_encoder = msgspec.json.Encoder()
_response_decoder = msgspec.json.Decoder(wire.ChatCompletion)
_chunk_decoder = msgspec.json.Decoder(wire.ChatCompletionChunk)
_ALNUM9 = re.compile(r"[A-Za-z0-9]{9}")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _alnum9(call_id: str) -> str:
    """Mistral wants tool-call ids of exactly 9 alphanumerics; map others deterministically so a call and its
    result still match."""
    if _ALNUM9.fullmatch(call_id):
        return call_id
    n = int.from_bytes(hashlib.blake2b(call_id.encode(), digest_size=8).digest(), "big")
    out = []
    for _ in range(9):
        n, r = divmod(n, 62)
        out.append(_BASE62[r])
    return "".join(out)


def resolve_preset(upstream: UpstreamConfig) -> Preset:
    name = upstream.preset or "openai"
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ValueError(
            f"upstream {upstream.name!r}: unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}"
        ) from None
    overrides = {k: v for k, v in upstream.options.items() if k in Preset.__struct_fields__}
    if overrides:
        merged = msgspec.to_builtins(preset) | overrides
        try:
            preset = msgspec.convert(merged, Preset)
        except msgspec.ValidationError as exc:
            raise ValueError(f"upstream {upstream.name!r}: invalid preset option: {exc}") from None
    return preset


# -- errors --------------------------------------------------------------------------------------------


# -- responses -----------------------------------------------------------------------------------------


def _usage(u: wire.CompletionUsage | msgspec.UnsetType | None) -> Usage:
    if u is None or u is UNSET:
        return Usage()
    cached = 0
    details = u.prompt_tokens_details
    if isinstance(details, wire.PromptTokensDetails) and isinstance(details.cached_tokens, int):
        cached = details.cached_tokens
    if not cached and isinstance(u.prompt_cache_hit_tokens, int):
        cached = u.prompt_cache_hit_tokens
    reasoning = 0
    cdetails = u.completion_tokens_details
    if isinstance(cdetails, wire.CompletionTokensDetails) and isinstance(cdetails.reasoning_tokens, int):
        reasoning = cdetails.reasoning_tokens
    output = u.completion_tokens
    # xAI counts reasoning outside completion_tokens (total = prompt + completion + reasoning); the core
    # counts it inside.
    if reasoning and u.total_tokens == u.prompt_tokens + u.completion_tokens + reasoning:
        output += reasoning
    return Usage(input_tokens=u.prompt_tokens, output_tokens=output, cached_tokens=cached, reasoning_tokens=reasoning)


def _finish(reason: str | None, stop_reason: object, has_calls: bool) -> tuple[FinishReason, str | None]:
    finish = _FINISH.get(reason or "stop", "stop")
    if finish == "stop" and has_calls:
        # A forced tool choice (and some servers always) ends with "stop" although the turn is a tool call.
        return "tool_calls", None
    if finish == "stop" and isinstance(stop_reason, str):
        return "stop_sequence", stop_reason  # vLLM names the stop string that matched
    return finish, None


def _call_signature(extra: dict[str, Any] | msgspec.UnsetType | None) -> str | None:
    """``extra_content.google.thought_signature`` of an upstream tool call, if any."""
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    return signature if isinstance(signature, str) and signature else None


def _text(value: str | msgspec.UnsetType | None) -> str:
    return value if isinstance(value, str) else ""


# gc=False: these hold only strings and None, never a cycle; untracked, the frames of every read (tens per read)
# do not push the collector towards a pass (the worker's threshold counts tracked allocations).
class _PlainDelta(msgspec.Struct, gc=False):
    content: str | None = None
    # What the canonical path rewrites (tool-call indices and signatures, ``reasoning`` -> ``reasoning_content``,
    # citations): a frame with any of these is parsed, not forwarded. Fields not named here are ignored.
    tool_calls: None = None
    function_call: None = None
    reasoning_content: None = None
    reasoning: None = None
    annotations: list[None] | None = None  # only an empty list or null


class _PlainChoice(msgspec.Struct, gc=False):
    delta: _PlainDelta
    index: Literal[0] = 0
    finish_reason: None = None


class _PlainChunk(msgspec.Struct, gc=False):
    """A ``chat.completion.chunk`` that may go to a chat-completions caller as it is: content only (no usage, no
    error, no finish: those frames are parsed and rendered by the encoder)."""

    choices: list[_PlainChoice]
    usage: None = None
    error: None = None


_plain_chunks = msgspec.json.Decoder(list[_PlainChunk])
_NEXT_FRAME = b"\n\ndata: "


def _plain_frames(frames: bytes) -> tuple[list[str], int] | None:
    """The texts in ``frames`` (whole SSE frames) if every one is a single ``data:`` line holding a plain chunk
    (``_PlainChunk``), else None. One decode for all of them, joined into a JSON array."""
    if not frames.startswith(b"data: "):
        return None
    if len(frames) < 1024 and (_PLAIN_END in frames or b"[DONE]" in frames or b'"usage":{' in frames):
        return None  # one frame of the stream's end: not worth a decode that fails
    # "data: A\n\ndata: B\n\n" -> "[A,B]": one split and one join (a replace and a count cost twice as much).
    items = frames.split(_NEXT_FRAME)
    items[0] = b"[" + items[0][6:]
    items[-1] = items[-1][:-2] + b"]"
    try:
        chunks = _plain_chunks.decode(b",".join(items))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if len(chunks) != len(items):  # the frames must be exactly the array's items (no "data: {..},{..}" frame)
        return None
    return [text for chunk in chunks for choice in chunk.choices if (text := choice.delta.content)], 0


# Where the plain frames of a read usually end: the finish frame (then usage and [DONE]).
_PLAIN_END = b'"finish_reason":"'


def _own_chunk_ids(start: StreamStart) -> bool:
    """Frames can go out unchanged only if their id is what the encoder would send (it prefixes ``chatcmpl-``)."""
    return start.id.startswith("chatcmpl")


class OpenAIStreamParser(StreamParser):
    """``chat.completion.chunk`` SSE -> canonical events. A stream must end with ``[DONE]`` or with every
    choice finished; anything else was cut short. ``text_runs``: a read's run of plain content frames comes out
    as one ``TextRun`` instead of a ``TextDelta`` each (for a caller that asked for runs)."""

    def __init__(self, model: str, text_runs: bool = False) -> None:
        self.sse = SSEDecoder()
        self.model = model
        self.text_runs = text_runs
        self.started = False
        self.done = False
        self.open: set[int] = set()  # choices seen and not yet finished
        self.ended: set[int] = set()
        self.calls: dict[tuple[int, int], tuple[int, str]] = {}  # (choice, upstream index) -> (index, id)
        self.call_count: dict[int, int] = {}

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        # Runs of plain content frames (``_plain_frames``) skip the SSE decoder and the full chunk decode: the text
        # of each is all they carry. The first frame, and anything else, takes the general path.
        if self.done or self.ended or not self.sse.at_boundary or b"\r" in chunk:
            return self._sse_feed(chunk)
        end = chunk.rfind(b"\n\n") + 2
        if end == 1:
            return self._sse_feed(chunk)
        frames = chunk if end == len(chunk) else chunk[:end]
        out: list[StreamEvent] = []
        pos = 0
        if not self.started:
            pos = frames.find(b"\n\n") + 2
            out = self._sse_feed(frames[:pos])
            if not self.started or pos == end:
                return out + self._sse_feed(chunk[pos:]) if pos < len(chunk) else out
        for start, stop, found in plain_segments(frames, pos, _plain_frames, _PLAIN_END):
            if found is None or self.ended or self.done:
                out.extend(self._sse_feed(frames[start:stop]))
            else:
                self.open.add(0)
                if self.text_runs:
                    if found[0]:
                        out.append(TextRun(texts=found[0]))
                else:
                    out.extend([TextDelta(text=text) for text in found[0]])
        if end < len(chunk):
            out.extend(self._sse_feed(chunk[end:]))
        return out

    def feed_frames(self, chunk: bytes) -> list[StreamEvent]:
        """``feed`` without the plain-frame fast path: for frames already known not to be plain."""
        return self._sse_feed(chunk)

    def _sse_feed(self, chunk: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self.sse.feed(chunk):
            if self.done:
                continue
            data = ev.data.strip()
            if data == "[DONE]":
                self.done = True
                continue
            if ev.event == "error":
                raise GatewayError("upstream", f"upstream error mid-stream: {data[:300]}")
            if not data:
                continue
            try:
                parsed = _chunk_decoder.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise GatewayError("upstream", "upstream sent a malformed stream chunk (not valid JSON)") from None
            self._chunk(parsed, out)
        return out

    def _chunk(self, c: wire.ChatCompletionChunk, out: list[StreamEvent]) -> None:
        if c.error is not UNSET and c.error:
            message, _t, _c, _p = openai_error_fields(502, _encoder.encode({"error": c.error}))
            raise GatewayError("upstream", f"upstream error mid-stream: {message}")
        if not self.started:
            self.started = True
            out.append(StreamStart(id=c.id or new_id("chatcmpl-"), model=c.model or self.model, created=c.created))
        ended = self.ended
        for ch in c.choices:
            i = ch.index
            if ended and i in ended:
                continue
            self.open.add(i)
            d = ch.delta
            # Per chunk, so inline type checks rather than _text calls: decoded strings are exactly str.
            reasoning = d.reasoning_content
            if type(reasoning) is not str or not reasoning:
                reasoning = d.reasoning
            if type(reasoning) is str and reasoning:
                out.append(ReasoningDelta(text=reasoning, choice=i))
            text = d.content
            if type(text) is str and text:
                out.append(TextDelta(text=text, choice=i))
            if d.tool_calls:
                self._tool_calls(i, d.tool_calls, out)
            if ch.finish_reason:
                finish, stop_seq = _finish(ch.finish_reason, ch.stop_reason, self.call_count.get(i, 0) > 0)
                out.append(ChoiceEnd(finish_reason=finish, stop_sequence=stop_seq, choice=i))
                self.open.discard(i)
                self.ended.add(i)
        if isinstance(c.usage, wire.CompletionUsage):
            out.append(UsageReport(usage=_usage(c.usage)))

    def _tool_calls(self, choice: int, deltas: list[wire.ToolCallDelta], out: list[StreamEvent]) -> None:
        for pos, tc in enumerate(deltas):
            up_index = tc.index if isinstance(tc.index, int) else pos
            fn = tc.function if isinstance(tc.function, wire.FunctionDelta) else None
            call_id = tc.id if isinstance(tc.id, str) and tc.id else None
            known = self.calls.get((choice, up_index))
            # Some servers reuse index 0 for every call; a different id means a new call.
            if known is None or (call_id is not None and call_id != known[1]):
                index = self.call_count.get(choice, 0)
                self.call_count[choice] = index + 1
                known = (index, call_id or new_id("call_"))
                self.calls[(choice, up_index)] = known
                name = _text(fn.name) if fn else ""
                signature = _call_signature(tc.extra_content)
                out.append(ToolCallStart(index=index, id=known[1], name=name, choice=choice, signature=signature))
            args = _text(fn.arguments) if fn else ""
            if args:
                out.append(ToolCallArgs(index=known[0], arguments=args, choice=choice))

    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if not self.done and self.sse.has_partial:
            out = self.feed(b"\n\n")  # a last event without its blank line
        if not self.done and (not self.started or self.open or not self.ended):
            raise GatewayError("upstream", "upstream stream ended before it was complete")
        if not self.started:
            raise GatewayError("upstream", "upstream sent an empty stream")
        if not self.ended:
            self.open.add(0)
        out.extend(ChoiceEnd(finish_reason="stop", choice=i) for i in sorted(self.open))
        self.open.clear()
        return out


class OpenAIProvider(HttpProvider):
    family: ClassVar[str] = "openai"
    capabilities = CHAT | IMAGES | EMBEDDINGS

    def __init__(self, upstream: UpstreamConfig) -> None:
        super().__init__(upstream)
        self.preset = resolve_preset(upstream)
        base = upstream.base_url or self.preset.base_url
        if not base:
            raise ValueError(f"upstream {upstream.name!r}: base_url is required for preset {upstream.preset!r}")
        self.url = base.rstrip("/") + "/chat/completions"
        self.images_url = base.rstrip("/") + "/images/generations"
        self.embeddings_url = base.rstrip("/") + "/embeddings"
        headers = {"content-type": "application/json"}
        if upstream.api_key:
            headers["authorization"] = f"Bearer {upstream.api_key}"
        for k, v in upstream.headers.items():
            headers[k.lower()] = v
        self.headers = headers
        self.stream_headers = {**headers, "accept": "text/event-stream"}
        self._rules: dict[str, ModelRule] = {}

    def rule(self, model: str) -> ModelRule:
        found = self._rules.get(model)
        if found is None:
            found = next((r for r in self.preset.rules if model.startswith(r.prefixes)), _NO_RULE)
            if len(self._rules) < 1024:
                self._rules[model] = found
        return found

    # -- request ---------------------------------------------------------------------------------------

    def _call_id(self, call_id: str) -> str:
        return _alnum9(call_id) if self.preset.tool_call_ids == "alnum9" else call_id

    def _content(self, m: Message, i: int) -> str | list[dict[str, Any]]:
        text_only = all(isinstance(p, TextPart) for p in m.content)
        if text_only and (len(m.content) == 1 or not self.preset.content_parts):
            return m.text()
        if not self.preset.content_parts:
            raise invalid("this upstream does not accept images", param=f"messages[{i}].content")
        parts: list[dict[str, Any]] = []
        for p in m.content:
            if isinstance(p, TextPart):
                parts.append({"type": "text", "text": p.text})
            elif isinstance(p, ImagePart):
                url = p.url if p.url else f"data:{p.media_type or 'image/png'};base64,{p.data or ''}"
                image: dict[str, Any] = {"url": url}
                if p.detail:
                    image["detail"] = p.detail
                parts.append({"type": "image_url", "image_url": image})
        return parts

    def _system_content(self, m: Message) -> str | list[dict[str, Any]]:
        texts = [p.text for p in m.content if isinstance(p, TextPart)]
        if len(texts) == 1 or not self.preset.content_parts:
            return TEXT_BLOCK_SEPARATOR.join(texts)
        return [{"type": "text", "text": t} for t in texts]

    def _media_parts(self, m: Message) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for p in m.content:
            if not isinstance(p, ImagePart):
                continue
            if p.media_type == "application/pdf" and p.data is not None:
                file = {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{p.data}"}
                parts.append({"type": "file", "file": file})
                continue
            url = p.url if p.url else f"data:{p.media_type or 'image/png'};base64,{p.data or ''}"
            image: dict[str, Any] = {"url": url}
            if p.detail:
                image["detail"] = p.detail
            parts.append({"type": "image_url", "image_url": image})
        return parts

    def _tool_media(self, tool_messages: list[Message]) -> dict[str, Any] | None:
        """The user message carrying the images/documents of a run of tool results, or None."""
        content: list[dict[str, Any]] = []
        for m in tool_messages:
            media = self._media_parts(m)
            if media:
                label = f"Content returned by tool call {self._call_id(m.tool_call_id or '')}:"
                content.append({"type": "text", "text": label})
                content.extend(media)
        if not content or not self.preset.content_parts:
            return None
        return {"role": "user", "content": content}

    def _messages(self, messages: list[Message]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        run: list[Message] = []  # the current run of consecutive tool messages
        for i, m in enumerate(messages):
            if m.role == "tool":
                run.append(m)
            elif run:
                media = self._tool_media(run)
                if media is not None:
                    out.append(media)
                run = []
            out.append(self._message(m, i))
        if run:
            media = self._tool_media(run)
            if media is not None:
                out.append(media)
        return out

    def _tool_call(self, c: ToolCall) -> dict[str, Any]:
        call: dict[str, Any] = {
            "id": self._call_id(c.id),
            "type": "function",
            "function": {"name": c.name, "arguments": c.arguments},
        }
        if c.signature and self.preset.call_signatures:
            call["extra_content"] = {"google": {"thought_signature": c.signature}}
        return call

    def _message(self, m: Message, i: int) -> dict[str, Any]:
        preset = self.preset
        if m.role == "tool":
            text = m.text()
            if m.is_error:
                text = TOOL_ERROR_PREFIX + text
            if not preset.content_parts and any(isinstance(p, ImagePart) for p in m.content):
                text += "\n[images omitted: this model accepts text only]"
            return {"role": "tool", "tool_call_id": self._call_id(m.tool_call_id or ""), "content": text}
        if m.role == "assistant":
            text = m.text()
            out: dict[str, Any] = {"role": "assistant", "content": text if text or not m.tool_calls else None}
            if m.tool_calls:
                out["tool_calls"] = [self._tool_call(c) for c in m.tool_calls]
            if preset.reasoning_input:
                reasoning = "".join(r.text for r in m.reasoning)
                if reasoning:
                    out["reasoning_content"] = reasoning
        elif m.role in ("system", "developer"):
            role = m.role if m.role == "system" or preset.developer_role else "system"
            out = {"role": role, "content": self._system_content(m)}
        else:
            out = {"role": m.role, "content": self._content(m, i)}
        if m.name and preset.message_names:
            out["name"] = m.name
        return out

    def build_body(self, req: ChatRequest, model: str) -> dict[str, Any]:
        preset = self.preset
        rule = self.rule(model)
        body: dict[str, Any] = {
            "model": model,
            "messages": self._messages(req.messages),
        }
        if req.stream:
            body["stream"] = True
            if preset.stream_usage:
                body["stream_options"] = {"include_usage": True}  # the gateway accounts from it
        if req.max_tokens is not None:
            body[preset.max_tokens_field] = req.max_tokens
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.top_p is not None:
            body["top_p"] = req.top_p
        if req.top_k is not None and preset.top_k:
            body["top_k"] = req.top_k
        if req.stop:
            body["stop"] = req.stop
        if req.n != 1:
            body["n"] = req.n
        if req.seed is not None:
            body[preset.seed_field] = req.seed
        if req.presence_penalty is not None:
            body["presence_penalty"] = req.presence_penalty
        if req.frequency_penalty is not None:
            body["frequency_penalty"] = req.frequency_penalty
        if req.tools:
            tools = []
            for t in req.tools:
                fn: dict[str, Any] = {"name": t.name}
                if t.description:
                    fn["description"] = t.description
                if t.parameters:
                    fn["parameters"] = t.parameters
                if t.strict is not None:
                    fn["strict"] = t.strict
                tools.append({"type": "function", "function": fn})
            body["tools"] = tools
            if req.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = req.parallel_tool_calls
        if req.tool_choice is not None:
            tc = req.tool_choice
            body["tool_choice"] = (
                {"type": "function", "function": {"name": tc.name or ""}} if tc.mode == "tool" else tc.mode
            )
        if req.response_format is not None:
            rf = req.response_format
            if rf.type == "json_schema":
                spec: dict[str, Any] = {"name": rf.name or "response", "schema": rf.schema or {}}
                if rf.strict is not None:
                    spec["strict"] = rf.strict
                if rf.description:
                    spec["description"] = rf.description
                body["response_format"] = {"type": "json_schema", "json_schema": spec}
            else:
                body["response_format"] = {"type": rf.type}
        if rule.reasoning_effort or (rule is _NO_RULE and preset.reasoning_effort):
            effort = effort_of(req.reasoning)
            if effort is not None:
                body["reasoning_effort"] = rule.effort_values.get(effort, effort)
        if req.user is not None:
            body["user"] = req.user
        if req.extra and req.inbound_protocol == "openai":
            for key, value in req.extra.items():
                if key not in _GATEWAY_FIELDS:
                    body.setdefault(key, value)
        for key in preset.drop | rule.drop if (preset.drop or rule.drop) else ():
            body.pop(key, None)
        return body

    def build_request(self, req: ChatRequest, model: str) -> UpstreamRequest:
        body = _encoder.encode(self.build_body(req, model))
        headers = self.stream_headers if req.stream else self.headers
        return UpstreamRequest(url=self.url, headers=dict(headers), body=body)

    # -- response --------------------------------------------------------------------------------------

    def parse_response(self, body: bytes, req: ChatRequest) -> ChatResponse:
        try:
            r = _response_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise GatewayError("upstream", "upstream returned a malformed chat completion (not valid JSON)") from None
        if not r.choices:
            message, _t, _c, _p = openai_error_fields(502, body)
            raise GatewayError("upstream", f"upstream returned no choices: {message}")
        choices = []
        for c in r.choices:
            m = c.message
            calls = [
                ToolCall(
                    id=t.id or new_id("call_"),
                    name=t.function.name,
                    arguments=t.function.arguments,
                    signature=_call_signature(t.extra_content),
                )
                for t in m.tool_calls or ()
            ]
            reasoning = _text(m.reasoning_content) or _text(m.reasoning)
            content = m.content if m.content else (m.refusal or "")
            finish, stop_seq = _finish(c.finish_reason, c.stop_reason, bool(calls))
            msg = Message(
                role="assistant",
                content=[TextPart(text=content)] if content else [],
                tool_calls=calls,
                reasoning=[ReasoningPart(text=reasoning)] if reasoning else [],
            )
            choices.append(Choice(index=c.index, message=msg, finish_reason=finish, stop_sequence=stop_seq))
        return ChatResponse(
            id=r.id or new_id("chatcmpl-"),
            model=r.model or req.model,
            created=r.created or now(),
            choices=choices,
            usage=_usage(r.usage),
        )

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return OpenAIStreamParser(req.model)

    def run_parser(self, req: ChatRequest) -> StreamParser | None:
        return OpenAIStreamParser(req.model, text_runs=True)

    def frame_relay(self, req: ChatRequest, stream_format: str) -> StreamParser | None:
        """Chat-completions frames forwarded as they are to a chat-completions caller. One choice only: the
        encoder then renders the few parsed frames (finish, usage) of a choice it has opened itself."""
        if stream_format != wire.STREAM_FORMAT or req.n != 1:
            return None
        parser = OpenAIStreamParser(req.model)
        return FrameRelay(parser, _plain_frames, _PLAIN_END, lambda: parser.done, _own_chunk_ids, parser.feed_frames)

    def build_image_request(self, req: ImageRequest, model: str) -> UpstreamRequest:
        preset = self.upstream.preset or "openai"
        if preset not in IMAGE_PRESETS:
            raise GatewayError(
                "invalid_request",
                f"upstream {self.upstream.name} (preset {preset}) has no image generation endpoint; image models "
                f"are served by presets {', '.join(sorted(IMAGE_PRESETS))}",
                param="model",
            )
        body = image_body(req, model, xai=preset == "xai")
        return UpstreamRequest(url=self.images_url, headers=self.headers, body=body)

    def parse_image_response(self, body: bytes, req: ImageRequest) -> ImageResult:
        return parse_images(body, self.upstream.name)

    # -- embeddings ------------------------------------------------------------------------------------

    def supports(self, capability: Capability) -> bool:
        if capability == "embeddings":
            return self.preset.embeddings
        return capability in self.capabilities

    def build_embeddings(self, req: EmbeddingRequest, model: str) -> UpstreamRequest:
        preset = self.preset
        if not preset.embeddings:
            raise cannot_embed(self.upstream.name, model)
        send_user = "user" not in preset.drop
        body = embeddings_body(req, model, preset.embeddings_base64, preset.dimensions_field, send_user)
        return UpstreamRequest(url=self.embeddings_url, headers=dict(self.headers), body=body)

    def parse_embeddings(self, body: bytes, req: EmbeddingRequest, model: str) -> EmbeddingResponse:
        return parse_embeddings_reply(body, req)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        retry_after = retry_after_header(headers)
        message, etype, code, param = openai_error_fields(status, body)
        if status == 429 and "insufficient_quota" in (code, etype):
            # This account has no credit left; another channel may still have some.
            return GatewayError("quota", message, code="insufficient_quota", retry_after=retry_after, retryable=True)
        err = upstream_status_error(status, message, retry_after)
        if err.kind in ("invalid_request", "not_found", "too_large"):
            err.param = param
            err.code = err.code or code
        return err


PROVIDER = OpenAIProvider
