"""Google Gemini API (generativelanguage v1beta) upstream.

Translation notes (why things are the way they are):

* System and developer messages before the first user/assistant turn become ``systemInstruction`` (one part
  per block, so block boundaries survive); Gemini has nothing else. A system message later in the
  conversation (Anthropic's mid-conversation system messages) is folded in place into the user turn as a
  text part ``[system]\n<text>``, so what it says stays where it was said.
* A tool result's images and documents go inside the ``functionResponse`` as ``parts`` of ``inlineData`` /
  ``fileData`` on Gemini 3 (its multimodal function responses), and as sibling parts of the same user turn,
  right after that function response, on earlier models.
* Gemini requires user/model turns to alternate, so consecutive turns of the same role are merged; tool
  results travel as ``functionResponse`` parts of a user turn.
* ``functionResponse.name`` is mandatory: taken from ``Message.name`` or from the earlier assistant call with
  the same id. Its ``response`` must be an object, so other JSON (or plain text) is wrapped as
  ``{"result": ...}``; a failed tool's output goes under the documented ``error`` key.
* Call ids: Gemini may or may not return ``functionCall.id``; we keep it when present and otherwise generate
  ``call_...``. Only ids that look like Gemini's own are sent back, since ids minted by the gateway or by
  another provider mean nothing to Gemini (and some deployments reject unknown ids).
* Image URLs become ``fileData`` with a mime type guessed from the extension. Limitation: the Gemini API only
  fetches ``fileData`` URIs it supports (Files API uploads, YouTube, and public URLs on recent models); other
  URLs fail upstream with a 400, which the caller sees as an invalid request. Base64 images are always safe.
* Tool parameters and response schemas go as JSON Schema (``parametersJsonSchema``/``responseJsonSchema``).
  With ``options: {schema_mode: legacy}`` the OpenAPI-subset fields are used instead, with the keywords that
  Gemini rejects there stripped recursively.
* Thought signatures (Gemini's opaque reasoning state): the one on a ``functionCall`` part is that call's
  ``ToolCall.signature``, always, whether or not reasoning was asked for (Gemini 3 rejects a replayed call
  without it), and goes back on the same call. A signature on a text part rides on
  ``ReasoningPart.signature`` when reasoning was asked for, and goes back on the first call of a turn whose
  calls carry none of their own (or on its last part).
* Reasoning: an effort becomes ``thinkingLevel`` on Gemini 3 and a ``thinkingBudget`` from the shared table on
  2.5; adaptive reasoning without an effort is the dynamic budget (-1) on 2.5 and the model's default level
  on Gemini 3.
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec

from omnirelay.core.embeddings import (
    EmbeddingRequest,
    EmbeddingResponse,
    estimate_input_tokens,
    fit_dimensions,
    l2_normalized,
)
from omnirelay.core.errors import GatewayError, invalid, retry_after_header, upstream_status_error
from omnirelay.core.events import (
    ChoiceEnd,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.ids import new_id, now
from omnirelay.core.image_gen import ImageRequest, ImageResult
from omnirelay.core.reasoning import budget_of, effort_of
from omnirelay.core.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
    ImagePart,
    Message,
    Reasoning,
    ReasoningPart,
    TextPart,
    ToolCall,
    Usage,
)
from omnirelay.providers.base import CHAT, EMBEDDINGS, IMAGES, HttpProvider, StreamParser, UpstreamRequest
from omnirelay.providers.imagen import imagen_body, parse_imagen
from omnirelay.wire import gemini as w
from omnirelay.wire.sse import SSEDecoder

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

_response_decoder = msgspec.json.Decoder(w.GenerateContentResponse)
_chunk_decoder = msgspec.json.Decoder(w.StreamChunk)
_error_decoder = msgspec.json.Decoder(w.ErrorBody)
_encoder = msgspec.json.Encoder()
_embed_decoder = msgspec.json.Decoder(w.EmbedContentResponse)
_batch_embed_decoder = msgspec.json.Decoder(w.BatchEmbedContentsResponse)

FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "error",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
    "OTHER": "error",
}

# Keywords Gemini's OpenAPI-subset Schema (``parameters``/``responseSchema``) refuses. JSON Schema fields
# (``parametersJsonSchema``/``responseJsonSchema``) take them, which is why that is the default.
_LEGACY_SCHEMA_DROP = frozenset(
    {"additionalProperties", "$schema", "$id", "$defs", "definitions", "strict", "$ref", "$comment", "examples"}
)

# Thinking budget ceilings per model line; a larger budget is a 400 upstream. Pro cannot switch thinking off.
_BUDGET_LIMITS: tuple[tuple[str, int, int], ...] = (
    # (model substring, minimum when thinking must stay on, maximum)
    ("2.5-pro", 128, 32768),
    ("2.5-flash-lite", 0, 24576),
    ("2.5-flash", 0, 24576),
)

# Base64 prefixes of the image formats Gemini accepts, for inline images sent without a media type.
_MAGIC: tuple[tuple[str, str], ...] = (
    ("iVBORw0KGgo", "image/png"),
    ("/9j/", "image/jpeg"),
    ("R0lGOD", "image/gif"),
    ("UklGR", "image/webp"),
)

_DATA_URL = re.compile(r"^data:([^;,]+)?(?:;[^,]*)?;base64,(.*)$", re.DOTALL)
_FOREIGN_ID_PREFIXES = ("call_", "toolu_", "chatcmpl-")
_CALLING_MODES: dict[str, w.FunctionCallingMode] = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}
# Canonical effort -> Gemini 3 thinkingLevel. Gemini 3 Pro knows only low and high.
_THINKING_LEVELS: dict[str, str] = {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high"}
_PRO_THINKING_LEVELS: dict[str, str] = {"minimal": "low", "low": "low", "medium": "high", "high": "high"}
SYSTEM_FOLD_PREFIX = "[system]\n"


def is_gemini_3(model: str) -> bool:
    """Gemini 3 and later: thinking levels, multimodal function responses, mandatory call signatures."""
    m = re.search(r"gemini-(\d+)", model)
    return m is not None and int(m.group(1)) >= 3


def _is_gemini_id(call_id: str) -> bool:
    return bool(call_id) and not call_id.startswith(_FOREIGN_ID_PREFIXES)


def _strip_legacy_schema(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_legacy_schema(v) for k, v in schema.items() if k not in _LEGACY_SCHEMA_DROP}
    if isinstance(schema, list):
        return [_strip_legacy_schema(v) for v in schema]
    return schema


def _json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    # "$schema" is metadata some clients add (zod-to-json-schema does); Gemini gains nothing from it.
    if "$schema" in schema:
        return {k: v for k, v in schema.items() if k != "$schema"}
    return schema


def _guess_image_type(url: str) -> str:
    path = urlsplit(url).path
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "image/jpeg"


def _sniff_base64(data: str) -> str:
    for prefix, mime in _MAGIC:
        if data.startswith(prefix):
            return mime
    return "image/jpeg"


def _image_part(part: ImagePart, param: str) -> w.Part:
    if part.data is not None:
        return w.Part(inline_data=w.Blob(mime_type=part.media_type or _sniff_base64(part.data), data=part.data))
    url = part.url or ""
    m = _DATA_URL.match(url)
    if m:
        data = m.group(2)
        return w.Part(inline_data=w.Blob(mime_type=m.group(1) or _sniff_base64(data), data=data))
    if url.startswith(("http://", "https://", "gs://")):
        return w.Part(file_data=w.FileData(file_uri=url, mime_type=part.media_type or _guess_image_type(url)))
    raise invalid("image must be an http(s) URL, a data: URL or base64 data", param)


def _function_response_body(text: str, is_error: bool) -> dict[str, Any]:
    try:
        value: Any = json.loads(text) if text.strip() else ""
    except ValueError:
        value = text
    if is_error:
        return {"error": value}
    if isinstance(value, dict):
        return value
    return {"result": value}


def _parse_args(arguments: str, param: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        raise invalid("tool call arguments must be a JSON object", param) from None
    if not isinstance(value, dict):
        raise invalid("tool call arguments must be a JSON object", param)
    return value


def _clamp_budget(model: str, budget: int | None, disabled: bool) -> int:
    lo, hi = 0, 32768
    for needle, minimum, maximum in _BUDGET_LIMITS:
        if needle in model:
            lo, hi = minimum, maximum
            break
    if disabled:
        return lo
    assert budget is not None
    return max(lo, min(hi, budget))


class _Turns:
    """Accumulates contents, merging consecutive turns of one role as Gemini requires."""

    __slots__ = ("contents",)

    def __init__(self) -> None:
        self.contents: list[w.Content] = []

    def add(self, role: str, parts: list[w.Part]) -> None:
        if not parts:
            return
        if self.contents and self.contents[-1].role == role:
            self.contents[-1].parts.extend(parts)
        else:
            self.contents.append(w.Content(role="model" if role == "model" else "user", parts=parts))


def _model_parts(msg: Message, i: int) -> list[w.Part]:
    parts: list[w.Part] = []
    text = msg.text()
    if text:
        parts.append(w.Part(text=text))
    first_call: w.Part | None = None
    for j, call in enumerate(msg.tool_calls):
        fc = w.FunctionCall(
            name=call.name,
            args=_parse_args(call.arguments, f"messages[{i}].tool_calls[{j}].function.arguments"),
            id=call.id if _is_gemini_id(call.id) else None,
        )
        part = w.Part(function_call=fc, thought_signature=call.signature)
        if first_call is None:
            first_call = part
        parts.append(part)
    # A reasoning signature (history from before calls carried their own) goes where Gemini put it: on the
    # first call, or on the last part of a turn without calls; never over a call's own signature.
    signature = next((r.signature for r in msg.reasoning if r.signature), None)
    if signature and parts and not any(c.signature for c in msg.tool_calls):
        (first_call or parts[-1]).thought_signature = signature
    return parts


def _user_parts(msg: Message, i: int) -> list[w.Part]:
    parts: list[w.Part] = []
    for k, part in enumerate(msg.content):
        if isinstance(part, TextPart):
            if part.text:
                parts.append(w.Part(text=part.text))
        else:
            parts.append(_image_part(part, f"messages[{i}].content[{k}]"))
    return parts


def _tool_result_parts(msg: Message, i: int, name: str, nested_media: bool) -> list[w.Part]:
    """The ``functionResponse`` of a tool result and the media it returned (nested on Gemini 3)."""
    media = [
        _image_part(p, f"messages[{i}].content[{k}]") for k, p in enumerate(msg.content) if isinstance(p, ImagePart)
    ]
    call_id = msg.tool_call_id
    fr = w.FunctionResponse(
        name=name,
        response=_function_response_body(msg.text(), msg.is_error),
        id=call_id if call_id and _is_gemini_id(call_id) else None,
    )
    if media and nested_media:
        fr.parts = [w.FunctionResponsePart(inline_data=m.inline_data, file_data=m.file_data) for m in media]
        media = []
    return [w.Part(function_response=fr), *media]


def _contents(req: ChatRequest, model: str) -> tuple[list[w.Part], list[w.Content]]:
    """(systemInstruction parts, contents): leading system text hoisted, later system text folded in place."""
    system: list[w.Part] = []
    turns = _Turns()
    call_names: dict[str, str] = {}
    nested_media = is_gemini_3(model)
    for i, msg in enumerate(req.messages):
        if msg.role in ("system", "developer"):
            texts = [p.text for p in msg.content if isinstance(p, TextPart) and p.text]
            if not turns.contents:
                system.extend(w.Part(text=t) for t in texts)
            else:
                turns.add("user", [w.Part(text=SYSTEM_FOLD_PREFIX + t) for t in texts])
        elif msg.role == "user":
            turns.add("user", _user_parts(msg, i))
        elif msg.role == "assistant":
            for call in msg.tool_calls:
                call_names[call.id] = call.name
            turns.add("model", _model_parts(msg, i))
        else:  # tool
            name = msg.name or call_names.get(msg.tool_call_id or "")
            if not name:
                raise invalid(
                    "tool result does not match any earlier assistant tool call (Gemini needs the function name)",
                    f"messages[{i}].tool_call_id",
                )
            turns.add("user", _tool_result_parts(msg, i, name, nested_media))
    if not turns.contents:
        raise invalid("at least one user or assistant message is required", "messages")
    return system, turns.contents


def _thinking_config(reasoning: Reasoning | None, model: str) -> w.ThinkingConfig | None:
    if reasoning is None:
        return None
    gemini_3 = is_gemini_3(model)
    if not reasoning.enabled:
        if gemini_3:  # Gemini 3 cannot switch thinking off; its lowest level is the closest
            return w.ThinkingConfig(thinking_level="low" if "pro" in model else "minimal")
        return w.ThinkingConfig(thinking_budget=_clamp_budget(model, None, True))
    if gemini_3:
        effort = effort_of(reasoning)
        levels = _PRO_THINKING_LEVELS if "pro" in model else _THINKING_LEVELS
        return w.ThinkingConfig(thinking_level=levels[effort] if effort else None, include_thoughts=True)
    budget = None if reasoning.adaptive and reasoning.effort is None else budget_of(reasoning)
    return w.ThinkingConfig(
        thinking_budget=-1 if budget is None else _clamp_budget(model, budget, False),
        include_thoughts=True,
    )


def build_body(req: ChatRequest, model: str, legacy_schema: bool = False) -> w.GenerateContentRequest:
    system, contents = _contents(req, model)

    tools: list[w.Tool] | None = None
    if req.tools:
        decls = []
        for tool in req.tools:
            params = tool.parameters or None
            decl = w.FunctionDeclaration(name=tool.name, description=tool.description)
            if params is not None:
                if legacy_schema:
                    decl.parameters = _strip_legacy_schema(params)
                else:
                    decl.parameters_json_schema = _json_schema(params)
            decls.append(decl)
        tools = [w.Tool(function_declarations=decls)]

    tool_config: w.ToolConfig | None = None
    if req.tool_choice is not None:
        choice = req.tool_choice
        mode = _CALLING_MODES[choice.mode]
        names = [choice.name] if choice.mode == "tool" and choice.name else None
        tool_config = w.ToolConfig(
            function_calling_config=w.FunctionCallingConfig(mode=mode, allowed_function_names=names)
        )

    gen = w.GenerationConfig(
        stop_sequences=req.stop or None,
        candidate_count=req.n if req.n != 1 else None,
        max_output_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        seed=req.seed,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
    )
    rf = req.response_format
    if rf is not None and rf.type != "text":
        gen.response_mime_type = "application/json"
        if rf.type == "json_schema" and rf.schema is not None:
            if legacy_schema:
                gen.response_schema = _strip_legacy_schema(rf.schema)
            else:
                gen.response_json_schema = _json_schema(rf.schema)
    gen.thinking_config = _thinking_config(req.reasoning, model)
    # An empty generationConfig is legal, but noise in request logs.
    has_gen = any(v is not None for v in msgspec.structs.astuple(gen))
    return w.GenerateContentRequest(
        contents=contents,
        system_instruction=w.Content(parts=system) if system else None,
        tools=tools,
        tool_config=tool_config,
        generation_config=gen if has_gen else None,
    )


# --- response side ---------------------------------------------------------------------------------------


def _usage(meta: w.UsageMetadata | None) -> Usage:
    if meta is None:
        return Usage()
    return Usage(
        input_tokens=meta.prompt_token_count + meta.tool_use_prompt_token_count,
        output_tokens=meta.candidates_token_count + meta.thoughts_token_count,
        cached_tokens=meta.cached_content_token_count,
        reasoning_tokens=meta.thoughts_token_count,
    )


def _finish(reason: str | None, has_calls: bool) -> FinishReason:
    mapped = FINISH_REASONS.get(reason or "STOP", "stop")
    if mapped == "stop" and has_calls:
        return "tool_calls"
    return mapped


def _args_text(args: dict[str, Any] | None) -> str:
    return _encoder.encode(args or {}).decode()


def _candidate_message(cand: w.Candidate, keep_signatures: bool) -> tuple[Message, bool]:
    texts: list[str] = []
    thoughts: list[str] = []
    signature: str | None = None
    calls: list[ToolCall] = []
    for part in cand.content.parts if cand.content else []:
        if part.thought_signature and signature is None:
            signature = part.thought_signature
        if part.function_call is not None:
            fc = part.function_call
            calls.append(
                ToolCall(
                    id=fc.id or new_id("call_"),
                    name=fc.name,
                    arguments=_args_text(fc.args),
                    signature=part.thought_signature,
                )
            )
        elif part.text is not None:
            (thoughts if part.thought else texts).append(part.text)
    reasoning: list[ReasoningPart] = []
    if thoughts or (signature and keep_signatures):
        reasoning.append(ReasoningPart(text="".join(thoughts), signature=signature if keep_signatures else None))
    text = "".join(texts)
    msg = Message(
        role="assistant",
        content=[TextPart(text=text)] if text else [],
        tool_calls=calls,
        reasoning=reasoning,
    )
    return msg, bool(calls)


def _wants_reasoning(req: ChatRequest) -> bool:
    return req.reasoning is not None and req.reasoning.enabled


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    for d in details:
        if str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = d.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return float(delay[:-1])
                except ValueError:
                    return None
    return None


def _status_error(status: w.Status, http_status: int, retry_after: float | None) -> GatewayError:
    # Google echoes API keys in some messages ("Consumer 'api_key:AIza...' has been suspended"): the executor
    # scrubs every upstream error before it goes anywhere.
    text = status.message or "no message"
    message = f"{status.status}: {text}" if status.status else text
    if retry_after is None:
        retry_after = _retry_delay(status.details)
    err = upstream_status_error(http_status, message, retry_after)
    if status.status:
        err.code = err.code or status.status.lower()
    return err


class GeminiStreamParser(StreamParser):
    def __init__(self, req: ChatRequest, model: str) -> None:
        self._sse = SSEDecoder()
        self._model = model
        self._keep_signatures = _wants_reasoning(req)
        self._n = max(1, req.n)
        self._started = False
        self._tool_counts: dict[int, int] = {}
        self._signed: set[int] = set()
        self._ended: set[int] = set()
        self._blocked = False
        self._usage: Usage | None = None

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for event in self._sse.feed(chunk):
            data = event.data.strip()
            if not data:
                continue
            try:
                parsed = _chunk_decoder.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise GatewayError("upstream", f"Gemini sent a malformed stream chunk: {exc}") from None
            self._chunk(parsed, out)
        return out

    def _chunk(self, chunk: w.StreamChunk, out: list[StreamEvent]) -> None:
        if chunk.error is not None:
            code = chunk.error.code if chunk.error.code >= 400 else 500
            raise _status_error(chunk.error, code, None)
        if not self._started:
            self._started = True
            out.append(
                StreamStart(
                    id=chunk.response_id or new_id("gen-"), model=chunk.model_version or self._model, created=now()
                )
            )
        for pos, cand in enumerate(chunk.candidates):
            idx = cand.index if cand.index is not None else pos
            for part in cand.content.parts if cand.content else []:
                if part.thought_signature and self._keep_signatures and idx not in self._signed:
                    self._signed.add(idx)
                    out.append(ReasoningDelta(signature=part.thought_signature, choice=idx))
                if part.function_call is not None:
                    fc = part.function_call
                    n = self._tool_counts.get(idx, 0)
                    self._tool_counts[idx] = n + 1
                    call_id = fc.id or new_id("call_")
                    signature = part.thought_signature
                    out.append(ToolCallStart(index=n, id=call_id, name=fc.name, choice=idx, signature=signature))
                    out.append(ToolCallArgs(index=n, arguments=_args_text(fc.args), choice=idx))
                elif part.text:
                    if part.thought:
                        out.append(ReasoningDelta(text=part.text, choice=idx))
                    else:
                        out.append(TextDelta(text=part.text, choice=idx))
            if cand.finish_reason and idx not in self._ended:
                self._ended.add(idx)
                out.append(ChoiceEnd(finish_reason=_finish(cand.finish_reason, idx in self._tool_counts), choice=idx))
        if chunk.usage_metadata is not None:
            self._usage = _usage(chunk.usage_metadata)  # cumulative: the latest replaces the earlier ones
        if chunk.prompt_feedback is not None and chunk.prompt_feedback.block_reason and not chunk.candidates:
            self._blocked = True
            for idx in range(self._n):
                if idx not in self._ended:
                    self._ended.add(idx)
                    out.append(ChoiceEnd(finish_reason="content_filter", choice=idx))

    def close(self) -> list[StreamEvent]:
        tail: list[StreamEvent] = []
        if self._sse.has_partial:
            # A last event without its blank line: usable if complete, a cut-off stream if not.
            try:
                tail = self.feed(b"\n\n")
            except GatewayError:
                raise GatewayError("upstream", "Gemini stream was cut off mid-event") from None
        if not self._ended:
            raise GatewayError("upstream", "Gemini stream ended before any finishReason (truncated)")
        if self._usage is not None:
            tail.append(UsageReport(usage=self._usage))
        return tail


class GeminiProvider(HttpProvider):
    family = "gemini"
    capabilities = CHAT | IMAGES | EMBEDDINGS

    def _root(self) -> str:
        base = (self.upstream.base_url or DEFAULT_BASE_URL).rstrip("/")
        if base.endswith(("/v1beta", "/v1", "/v1alpha")):
            return base
        return base + "/v1beta"

    def _legacy_schema(self) -> bool:
        return self.upstream.options.get("schema_mode") == "legacy"

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", **self.upstream.headers}
        if self.upstream.api_key:
            # The key goes in a header, never in ``?key=``: URLs end up in logs.
            headers["x-goog-api-key"] = self.upstream.api_key
        return headers

    def build_image_request(self, req: ImageRequest, model: str) -> UpstreamRequest:
        """Imagen's ``:predict`` (the Gemini API's image generation endpoint for ``imagen-*`` models)."""
        if not model.removeprefix("models/").startswith("imagen-"):
            raise GatewayError(
                "invalid_request",
                f"model {model} on upstream {self.upstream.name} cannot generate images through "
                "/v1/images/generations: on the Gemini API only Imagen models (imagen-*) can",
                param="model",
            )
        resource = model if model.startswith("models/") else "models/" + model
        return UpstreamRequest(url=f"{self._root()}/{resource}:predict", headers=self._headers(), body=imagen_body(req))

    def parse_image_response(self, body: bytes, req: ImageRequest) -> ImageResult:
        return parse_imagen(body, self.upstream.name)

    def build_request(self, req: ChatRequest, model: str) -> UpstreamRequest:
        body = build_body(req, model, self._legacy_schema())
        resource = model if model.startswith(("models/", "tunedModels/")) else "models/" + model
        if req.stream:
            url = f"{self._root()}/{resource}:streamGenerateContent?alt=sse"
        else:
            url = f"{self._root()}/{resource}:generateContent"
        headers = self._headers()
        if req.extra and req.inbound_protocol == self.family:
            raw = msgspec.to_builtins(body)
            raw.update(req.extra)
            payload = _encoder.encode(raw)
        else:
            payload = _encoder.encode(body)
        return UpstreamRequest(url=url, headers=headers, body=payload)

    def parse_response(self, body: bytes, req: ChatRequest) -> ChatResponse:
        try:
            resp = _response_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise GatewayError("upstream", f"Gemini sent a malformed response: {exc}") from None
        keep = _wants_reasoning(req)
        choices: list[Choice] = []
        for pos, cand in enumerate(resp.candidates):
            msg, has_calls = _candidate_message(cand, keep)
            idx = cand.index if cand.index is not None else pos
            choices.append(Choice(index=idx, message=msg, finish_reason=_finish(cand.finish_reason, has_calls)))
        if not choices:
            if resp.prompt_feedback is None or not resp.prompt_feedback.block_reason:
                raise GatewayError("upstream", "Gemini returned no candidates")
            # The prompt itself was blocked: an empty, filtered answer is what OpenAI and Anthropic would say.
            choices = [
                Choice(index=i, message=Message(role="assistant"), finish_reason="content_filter")
                for i in range(max(1, req.n))
            ]
        choices.sort(key=lambda c: c.index)
        return ChatResponse(
            id=resp.response_id or new_id("gen-"),
            model=resp.model_version or req.model,
            created=now(),
            choices=choices,
            usage=_usage(resp.usage_metadata),
        )

    def stream_parser(self, req: ChatRequest) -> StreamParser:
        return GeminiStreamParser(req, req.model)

    # -- embeddings: one input is an embedContent call, several one batchEmbedContents call ---------------

    def build_embeddings(self, req: EmbeddingRequest, model: str) -> UpstreamRequest:
        if not req.texts:
            raise invalid("Gemini embedding models take text input, not token arrays", param="input")
        resource = model if model.startswith(("models/", "tunedModels/")) else "models/" + model
        requests = [
            w.EmbedContentRequest(
                content=w.Content(parts=[w.Part(text=text)]),
                model=resource,
                output_dimensionality=req.dimensions,
            )
            for text in req.texts
        ]
        if len(requests) == 1:
            url, body = f"{self._root()}/{resource}:embedContent", _encoder.encode(requests[0])
        else:
            url = f"{self._root()}/{resource}:batchEmbedContents"
            body = _encoder.encode(w.BatchEmbedContentsRequest(requests=requests))
        return UpstreamRequest(url=url, headers=self._headers(), body=body)

    def parse_embeddings(self, body: bytes, req: EmbeddingRequest, model: str) -> EmbeddingResponse:
        try:
            if req.count == 1:
                one = _embed_decoder.decode(body)
                embeddings, usage = [one.embedding], one.usage_metadata
            else:
                batch = _batch_embed_decoder.decode(body)
                embeddings, usage = batch.embeddings, batch.usage_metadata
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise GatewayError("upstream", f"Gemini sent a malformed embeddings response: {exc}") from None
        if len(embeddings) != req.count or any(not e.values for e in embeddings):
            raise GatewayError("upstream", f"Gemini returned {len(embeddings)} embeddings for {req.count} inputs")
        # The Gemini API reports no token count for embeddings (Vertex does): the input is estimated then.
        exact = usage is not None and usage.prompt_token_count > 0
        vectors = fit_dimensions([e.values for e in embeddings], req.dimensions)
        if req.dimensions is not None:  # Gemini normalises only full-length vectors; OpenAI's callers expect unit
            vectors = [l2_normalized(v) for v in vectors]
        return EmbeddingResponse(
            model=req.model,
            vectors=vectors,
            input_tokens=usage.prompt_token_count if usage is not None and exact else estimate_input_tokens(req),
            exact_usage=exact,
        )

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        retry_after = retry_after_header(headers)
        try:
            parsed = _error_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            snippet = body[:200].decode("utf-8", errors="replace").strip()
            message = snippet or f"HTTP {status}"
            return upstream_status_error(status, f"Gemini: {message}", retry_after)
        return _status_error(parsed.error, status, retry_after)


PROVIDER = GeminiProvider
