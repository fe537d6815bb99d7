"""Google Gemini API (generativelanguage v1beta) wire shapes: ``models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``.

Field names are camelCase on the wire (``rename="camel"``). A ``Part`` is a union by field presence, not a
tagged union: exactly one of ``text``/``inlineData``/``fileData``/``functionCall``/``functionResponse`` is set,
with ``thought``/``thoughtSignature`` alongside. Reference: https://ai.google.dev/api/generate-content
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

FunctionCallingMode = Literal["AUTO", "ANY", "NONE", "VALIDATED"]


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    pass


# --- content ---------------------------------------------------------------------------------------------


class Blob(_Wire):
    mime_type: str
    data: str  # base64


class FileData(_Wire):
    file_uri: str
    mime_type: str | None = None


class FunctionCall(_Wire):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class FunctionResponsePart(_Wire):
    """Media returned by a function (Gemini 3 multimodal function responses)."""

    inline_data: Blob | None = None
    file_data: FileData | None = None


class FunctionResponse(_Wire):
    name: str
    response: dict[str, Any]  # must be a JSON object; "output"/"error" keys are documented conventions
    id: str | None = None
    parts: list[FunctionResponsePart] | None = None  # Gemini 3: images/documents the tool returned


class Part(_Wire):
    text: str | None = None
    inline_data: Blob | None = None
    file_data: FileData | None = None
    function_call: FunctionCall | None = None
    function_response: FunctionResponse | None = None
    thought: bool | None = None  # True on a part that is a thought summary
    thought_signature: str | None = None  # opaque; sent back on the same part in the next turn


class Content(_Wire):
    parts: list[Part] = []
    role: Literal["user", "model"] | None = None


# --- request ---------------------------------------------------------------------------------------------


class FunctionDeclaration(_Wire):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None  # OpenAPI-subset Schema
    parameters_json_schema: dict[str, Any] | None = None  # JSON Schema; mutually exclusive with parameters


class Tool(_Wire):
    function_declarations: list[FunctionDeclaration] = []


class FunctionCallingConfig(_Wire):
    mode: FunctionCallingMode | None = None
    allowed_function_names: list[str] | None = None


class ToolConfig(_Wire):
    function_calling_config: FunctionCallingConfig | None = None


class ThinkingConfig(_Wire):
    thinking_budget: int | None = None  # 0 disables thinking, -1 lets the model decide (Gemini 2.5)
    thinking_level: str | None = None  # Gemini 3: "minimal" | "low" | "medium" | "high"
    include_thoughts: bool | None = None


class GenerationConfig(_Wire):
    stop_sequences: list[str] | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None  # OpenAPI-subset Schema
    response_json_schema: dict[str, Any] | None = None  # JSON Schema; mutually exclusive with response_schema
    candidate_count: int | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    thinking_config: ThinkingConfig | None = None


class GenerateContentRequest(_Wire):
    contents: list[Content]
    system_instruction: Content | None = None
    tools: list[Tool] | None = None
    tool_config: ToolConfig | None = None
    generation_config: GenerationConfig | None = None
    safety_settings: list[dict[str, Any]] | None = None
    cached_content: str | None = None


# --- response --------------------------------------------------------------------------------------------


class Candidate(_Wire):
    content: Content | None = None  # absent when the candidate was blocked
    finish_reason: str | None = None  # STOP, MAX_TOKENS, SAFETY, RECITATION, ... (absent mid-stream)
    index: int | None = None  # Google omits 0 in some replies


class PromptFeedback(_Wire):
    block_reason: str | None = None  # SAFETY, OTHER, BLOCKLIST, PROHIBITED_CONTENT, IMAGE_SAFETY


class UsageMetadata(_Wire):
    prompt_token_count: int = 0  # includes cached_content_token_count
    cached_content_token_count: int = 0
    candidates_token_count: int = 0  # excludes thoughts
    tool_use_prompt_token_count: int = 0
    thoughts_token_count: int = 0
    total_token_count: int = 0


class GenerateContentResponse(_Wire):
    candidates: list[Candidate] = []
    prompt_feedback: PromptFeedback | None = None
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None


# --- errors ----------------------------------------------------------------------------------------------


class Status(_Wire):
    code: int = 0
    message: str = ""
    status: str = ""  # google.rpc.Code name: INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE, ...
    details: list[dict[str, Any]] = []  # "@type"-tagged google.rpc messages (ErrorInfo, RetryInfo, ...)


class ErrorBody(_Wire):
    error: Status


class StreamChunk(GenerateContentResponse):
    """One SSE ``data:`` payload. Google may end a stream with an error object instead of a response."""

    error: Status | None = None


# --- embeddings: models/{model}:embedContent and :batchEmbedContents ----------------------------------------
# Reference: https://ai.google.dev/api/embeddings


class EmbedContentRequest(_Wire):
    content: Content
    model: str | None = None  # required in each request of a batch ("models/{model}")
    task_type: str | None = None
    title: str | None = None
    output_dimensionality: int | None = None


class BatchEmbedContentsRequest(_Wire):
    requests: list[EmbedContentRequest]


class ContentEmbedding(_Wire):
    values: list[float] = []


class EmbedContentResponse(_Wire):
    embedding: ContentEmbedding
    usage_metadata: UsageMetadata | None = None


class BatchEmbedContentsResponse(_Wire):
    embeddings: list[ContentEmbedding] = []
    usage_metadata: UsageMetadata | None = None
