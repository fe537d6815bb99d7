"""The OpenAI Responses API wire format (``POST /v1/responses``), as msgspec Structs.

Requests are decoded leniently: an input item carries every field any item type has (a message item may come
without ``type``, as the SDK's "easy" message form does), and the protocol decides per ``type``. Content parts
are a tagged union, so an unknown part type is a clear 400 naming it. Everything the gateway answers (the
response object, output items, stream events) is encoded from the typed Structs below, in the shapes the
official SDK types them.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

# -- request: content parts ---------------------------------------------------------------------------------


class InputText(msgspec.Struct, omit_defaults=True, tag="input_text", tag_field="type", kw_only=True):
    text: str


class OutputTextIn(msgspec.Struct, omit_defaults=True, tag="output_text", tag_field="type", kw_only=True):
    """Assistant text sent back as input (a previous response's output item)."""

    text: str
    annotations: list[dict[str, Any]] = []


class RefusalIn(msgspec.Struct, omit_defaults=True, tag="refusal", tag_field="type", kw_only=True):
    refusal: str


class InputImage(msgspec.Struct, omit_defaults=True, tag="input_image", tag_field="type", kw_only=True):
    image_url: str | None = None  # http(s) URL or a base64 data: URL
    file_id: str | None = None
    detail: str | None = None


class InputFile(msgspec.Struct, omit_defaults=True, tag="input_file", tag_field="type", kw_only=True):
    file_data: str | None = None  # a base64 data: URL
    file_id: str | None = None
    file_url: str | None = None
    filename: str | None = None


InputContent = InputText | OutputTextIn | RefusalIn | InputImage | InputFile


class SummaryText(msgspec.Struct, tag="summary_text", tag_field="type", kw_only=True):
    text: str


# -- request: input items -----------------------------------------------------------------------------------


class InputItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Any input item: ``message`` (the default type), ``function_call``, ``function_call_output``,
    ``reasoning``; other types are refused by the protocol with the item's path. Encoded (a stored history)
    without the fields it does not have."""

    type: str = "message"
    id: str | None = None
    status: str | None = None
    # message
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[InputContent] | None = None
    # function_call / function_call_output
    call_id: str | None = None
    name: str | None = None
    namespace: str | None = None
    arguments: str | None = None
    output: str | list[InputContent] | None = None
    # reasoning
    summary: list[SummaryText] = []
    encrypted_content: str | None = None


class FunctionTool(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A tool entry. Function tools use ``name``/``description``/``parameters``/``strict``; the other types
    are recognised by ``type`` alone (their own fields are not modelled)."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    tools: list[FunctionTool] | None = None  # a ``namespace`` tool's own tools


class TextFormat(msgspec.Struct, kw_only=True):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class TextConfig(msgspec.Struct, kw_only=True):
    format: TextFormat | None = None
    verbosity: str | None = None


class ReasoningConfig(msgspec.Struct, kw_only=True):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesRequest(msgspec.Struct, kw_only=True):
    model: str
    input: str | list[InputItem] = []
    instructions: str | None = None
    stream: bool | None = None
    tools: list[FunctionTool] = []
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning: ReasoningConfig | None = None
    text: TextConfig | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    include: list[str] | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    user: str | None = None
    truncation: str | None = None
    omnirelay: dict[str, Any] | None = None


# -- response: output items -----------------------------------------------------------------------------------


class UrlCitation(msgspec.Struct, tag="url_citation", tag_field="type", kw_only=True):
    start_index: int
    end_index: int
    url: str
    title: str


class OutputText(msgspec.Struct, tag="output_text", tag_field="type", kw_only=True):
    text: str
    annotations: list[UrlCitation] = []
    logprobs: list[Any] = []


class OutputMessage(msgspec.Struct, tag="message", tag_field="type", kw_only=True):
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    content: list[OutputText] = []
    role: Literal["assistant"] = "assistant"


class FunctionCall(msgspec.Struct, tag="function_call", tag_field="type", kw_only=True):
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"]
    namespace: str | UnsetType = UNSET  # set when the function belongs to a ``namespace`` tool


class ReasoningItem(msgspec.Struct, tag="reasoning", tag_field="type", kw_only=True, omit_defaults=True):
    id: str
    summary: list[SummaryText] = []
    # Opaque upstream data that lets a later turn send the reasoning back (Anthropic's thinking signature).
    encrypted_content: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | UnsetType = UNSET


OutputItem = OutputMessage | FunctionCall | ReasoningItem


# -- response: the object ---------------------------------------------------------------------------------------


class InputTokensDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(msgspec.Struct, kw_only=True):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct, kw_only=True):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int
    cost: float | UnsetType = UNSET  # omnirelay's price of the call in USD


class IncompleteDetails(msgspec.Struct, kw_only=True):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(msgspec.Struct, kw_only=True):
    code: str
    message: str


class ReasoningEcho(msgspec.Struct, kw_only=True):
    effort: str | None = None
    summary: str | None = None


class TextEcho(msgspec.Struct, kw_only=True):
    format: dict[str, Any]


ResponseStatus = Literal["completed", "incomplete", "failed", "in_progress"]


class Response(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem] = []
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: ReasoningEcho | None = None
    store: bool = True
    temperature: float | None = None
    text: TextEcho | None = None
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = []
    top_p: float | None = None
    truncation: str = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = {}
    # omnirelay's price of the call in USD (also in usage.cost), null until known.
    cost: float | None = None


# -- stream events ----------------------------------------------------------------------------------------------


class ResponseLifecycle(msgspec.Struct, kw_only=True):
    """response.created / .in_progress / .completed / .incomplete / .failed: the response so far."""

    type: str
    sequence_number: int
    response: Response


class OutputItemEvent(msgspec.Struct, kw_only=True):
    """response.output_item.added / .done."""

    type: str
    sequence_number: int
    output_index: int
    item: OutputItem


class ContentPartEvent(msgspec.Struct, kw_only=True):
    """response.content_part.added / .done."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class OutputTextDelta(msgspec.Struct, tag="response.output_text.delta", tag_field="type", kw_only=True):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = []


class OutputTextDone(msgspec.Struct, tag="response.output_text.done", tag_field="type", kw_only=True):
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = []


class ArgumentsDelta(msgspec.Struct, tag="response.function_call_arguments.delta", tag_field="type", kw_only=True):
    sequence_number: int
    item_id: str
    output_index: int
    delta: str


class ArgumentsDone(msgspec.Struct, tag="response.function_call_arguments.done", tag_field="type", kw_only=True):
    sequence_number: int
    item_id: str
    output_index: int
    arguments: str


class SummaryPartEvent(msgspec.Struct, kw_only=True):
    """response.reasoning_summary_part.added / .done."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class SummaryTextDelta(msgspec.Struct, tag="response.reasoning_summary_text.delta", tag_field="type", kw_only=True):
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class SummaryTextDone(msgspec.Struct, tag="response.reasoning_summary_text.done", tag_field="type", kw_only=True):
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    text: str


# -- errors -------------------------------------------------------------------------------------------------------


class ErrorDetail(msgspec.Struct, kw_only=True):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(msgspec.Struct, kw_only=True):
    error: ErrorDetail
