"""The OpenAI Chat Completions wire format (``POST /v1/chat/completions``), as msgspec Structs.

One set of structs serves both directions: decoding what callers send and what upstreams answer, encoding
what the gateway answers. Optional fields the real API leaves out are typed with ``UnsetType`` and default to
``UNSET`` (msgspec omits them on encode); fields the API always sends, possibly as ``null`` (``content`` on a
tool-call message, ``logprobs``, ``finish_reason`` in chunks, ``param``/``code`` in errors), default to
``None`` and are always encoded. Decoding is lenient where OpenAI-compatible servers differ (``null`` where
OpenAI omits, ``reasoning`` next to ``reasoning_content``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

# -- request: message content parts ------------------------------------------------------------------------


class TextContent(msgspec.Struct, tag="text", tag_field="type", kw_only=True):
    text: str


class ImageURL(msgspec.Struct, kw_only=True):
    url: str  # http(s) URL or a ``data:<media type>;base64,<data>`` URL
    detail: Literal["auto", "low", "high"] | UnsetType = UNSET


class ImageURLContent(msgspec.Struct, tag="image_url", tag_field="type", kw_only=True):
    image_url: ImageURL


class InputAudio(msgspec.Struct, kw_only=True):
    data: str
    format: str


class InputAudioContent(msgspec.Struct, tag="input_audio", tag_field="type", kw_only=True):
    input_audio: InputAudio


class FileRef(msgspec.Struct, kw_only=True):
    file_data: str | UnsetType = UNSET
    file_id: str | UnsetType = UNSET
    filename: str | UnsetType = UNSET


class FileContent(msgspec.Struct, tag="file", tag_field="type", kw_only=True):
    file: FileRef


class RefusalContent(msgspec.Struct, tag="refusal", tag_field="type", kw_only=True):
    refusal: str


ContentPart = TextContent | ImageURLContent | InputAudioContent | FileContent | RefusalContent


# -- tool calls (shared by requests, responses and chunks) ------------------------------------------------


class FunctionCall(msgspec.Struct, kw_only=True):
    name: str
    arguments: str  # JSON text


class ToolCall(msgspec.Struct, kw_only=True):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"
    # Provider state attached to the call, as Gemini's OpenAI-compatible API sends it:
    # ``{"google": {"thought_signature": "..."}}``; clients send it back with the call.
    extra_content: dict[str, Any] | UnsetType = UNSET


# -- request -----------------------------------------------------------------------------------------------

Role = Literal["system", "developer", "user", "assistant", "tool"]


class ChatMessage(msgspec.Struct, kw_only=True):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # assistant
    tool_call_id: str | None = None  # tool
    refusal: str | None = None  # assistant
    # Reasoning text of an earlier assistant turn, as DeepSeek/vLLM return it and clients send it back.
    reasoning_content: str | None = None


class FunctionDef(msgspec.Struct, kw_only=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(msgspec.Struct, kw_only=True):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(msgspec.Struct, kw_only=True):
    name: str


class NamedToolChoice(msgspec.Struct, kw_only=True):
    type: Literal["function"]
    function: NamedFunction


ToolChoiceMode = Literal["auto", "none", "required"]


class JSONSchemaSpec(msgspec.Struct, kw_only=True):
    name: str
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class ResponseFormatText(msgspec.Struct, tag="text", tag_field="type", kw_only=True):
    pass


class ResponseFormatJSONObject(msgspec.Struct, tag="json_object", tag_field="type", kw_only=True):
    pass


class ResponseFormatJSONSchema(msgspec.Struct, tag="json_schema", tag_field="type", kw_only=True):
    json_schema: JSONSchemaSpec


ResponseFormat = ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]

Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, Meta(ge=0.0, le=1.0)]
Penalty = Annotated[float, Meta(ge=-2.0, le=2.0)]
PositiveInt = Annotated[int, Meta(ge=1)]


class ChatCompletionRequest(msgspec.Struct, kw_only=True):
    """What a caller sends. Fields below ``# passthrough`` are validated here but not translated: the
    inbound protocol forwards them only to OpenAI-family upstreams."""

    model: str
    messages: list[ChatMessage]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: PositiveInt | None = None  # not OpenAI's, but vLLM/llama.cpp/OpenRouter accept it
    stop: str | list[str] | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    seed: int | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoiceMode | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None
    user: str | None = None
    omnirelay: dict[str, Any] | None = None  # the gateway's own per-request options
    # passthrough
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    logit_bias: dict[str, float] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    modalities: list[str] | None = None
    prediction: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    verbosity: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None


# -- response ----------------------------------------------------------------------------------------------


class ResponseMessage(msgspec.Struct, kw_only=True):
    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    reasoning_content: str | UnsetType | None = UNSET
    reasoning: str | UnsetType | None = UNSET  # vLLM / Ollama spelling, decode only
    tool_calls: list[ToolCall] | UnsetType | None = UNSET
    annotations: list[Any] | UnsetType | None = UNSET


class Choice(msgspec.Struct, kw_only=True):
    index: int = 0
    message: ResponseMessage = msgspec.field(default_factory=ResponseMessage)
    logprobs: Any = None
    finish_reason: str | None = None
    stop_reason: str | int | UnsetType | None = UNSET  # vLLM: the stop string that ended the choice


class PromptTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int | UnsetType | None = UNSET
    audio_tokens: int | UnsetType | None = UNSET


class CompletionTokensDetails(msgspec.Struct, kw_only=True):
    reasoning_tokens: int | UnsetType | None = UNSET
    audio_tokens: int | UnsetType | None = UNSET
    accepted_prediction_tokens: int | UnsetType | None = UNSET
    rejected_prediction_tokens: int | UnsetType | None = UNSET


class CompletionUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | UnsetType | None = UNSET
    completion_tokens_details: CompletionTokensDetails | UnsetType | None = UNSET
    prompt_cache_hit_tokens: int | UnsetType | None = UNSET  # DeepSeek's spelling of cached tokens
    cost: float | UnsetType = UNSET  # gateway extension: USD for this request


class ChatCompletion(msgspec.Struct, kw_only=True):
    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice] = []
    usage: CompletionUsage | UnsetType | None = UNSET
    system_fingerprint: str | UnsetType | None = UNSET
    service_tier: str | UnsetType | None = UNSET


# -- stream chunk ------------------------------------------------------------------------------------------


class FunctionDelta(msgspec.Struct, kw_only=True):
    name: str | UnsetType | None = UNSET
    arguments: str | UnsetType | None = UNSET


class ToolCallDelta(msgspec.Struct, kw_only=True):
    index: int | UnsetType = UNSET
    id: str | UnsetType | None = UNSET
    type: str | UnsetType | None = UNSET
    function: FunctionDelta | UnsetType | None = UNSET
    extra_content: dict[str, Any] | UnsetType | None = UNSET  # as on ToolCall, in the call's first delta


class Delta(msgspec.Struct, kw_only=True):
    role: str | UnsetType | None = UNSET
    content: str | UnsetType | None = UNSET
    reasoning_content: str | UnsetType | None = UNSET
    reasoning: str | UnsetType | None = UNSET  # vLLM / Ollama spelling, decode only
    tool_calls: list[ToolCallDelta] | UnsetType | None = UNSET
    refusal: str | UnsetType | None = UNSET
    annotations: list[Any] | UnsetType | None = UNSET  # url_citation entries (compound deepsearch)


class ChunkChoice(msgspec.Struct, kw_only=True):
    index: int = 0
    delta: Delta = msgspec.field(default_factory=Delta)
    logprobs: Any = None
    finish_reason: str | None = None
    stop_reason: str | int | UnsetType | None = UNSET


class ChatCompletionChunk(msgspec.Struct, kw_only=True):
    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = []
    # Absent unless the caller asked for stream_options.include_usage; then null on every chunk but the last.
    usage: CompletionUsage | UnsetType | None = UNSET
    system_fingerprint: str | UnsetType | None = UNSET
    error: Any | UnsetType = UNSET  # decode only: an error frame some servers send mid-stream


# -- errors ------------------------------------------------------------------------------------------------


class ErrorDetail(msgspec.Struct, kw_only=True):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(msgspec.Struct, kw_only=True):
    error: ErrorDetail


# -- models ------------------------------------------------------------------------------------------------


class Model(msgspec.Struct, kw_only=True):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "omnirelay"


class ModelList(msgspec.Struct, kw_only=True):
    data: list[Model]
    object: str = "list"


# The name of this family's stream format (``chat.completion.chunk`` SSE): a protocol and a provider that both
# declare it can pass frames through unchanged (providers/passthrough.py).
STREAM_FORMAT = "openai_chat"
