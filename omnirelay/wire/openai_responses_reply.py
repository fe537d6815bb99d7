"""What an OpenAI Responses upstream answers (the response object and its stream events), decoded leniently.

``wire/openai_responses.py`` holds the exact shapes omnirelay itself encodes; an upstream's reply may carry item
and part types the gateway does not model (web search calls, refusals, new types), so these Structs keep every
field optional and the provider decides per ``type``.
"""

from __future__ import annotations

import msgspec


class ReplyContent(msgspec.Struct, kw_only=True):
    type: str
    text: str = ""
    refusal: str = ""


class ReplySummary(msgspec.Struct, kw_only=True):
    type: str = "summary_text"
    text: str = ""


class ReplyItem(msgspec.Struct, kw_only=True):
    """Any output item: ``message``, ``function_call``, ``reasoning`` (others are skipped)."""

    type: str
    id: str = ""
    status: str | None = None
    content: list[ReplyContent] | None = None
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    summary: list[ReplySummary] | None = None
    encrypted_content: str | None = None


class ReplyInputDetails(msgspec.Struct, kw_only=True):
    cached_tokens: int | None = None


class ReplyOutputDetails(msgspec.Struct, kw_only=True):
    reasoning_tokens: int | None = None


class ReplyUsage(msgspec.Struct, kw_only=True):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: ReplyInputDetails | None = None
    output_tokens_details: ReplyOutputDetails | None = None


class ReplyError(msgspec.Struct, kw_only=True):
    code: str | None = None
    message: str = ""


class ReplyIncomplete(msgspec.Struct, kw_only=True):
    reason: str | None = None


class ReplyResponse(msgspec.Struct, kw_only=True):
    id: str = ""
    created_at: int = 0
    model: str = ""
    status: str | None = None
    output: list[ReplyItem] = []
    usage: ReplyUsage | None = None
    error: ReplyError | None = None
    incomplete_details: ReplyIncomplete | None = None


class ReplyEvent(msgspec.Struct, kw_only=True):
    """One stream event; which fields are set depends on ``type``."""

    type: str
    sequence_number: int | None = None
    response: ReplyResponse | None = None
    item: ReplyItem | None = None
    output_index: int = 0
    item_id: str = ""
    summary_index: int = 0
    delta: str = ""
    arguments: str | None = None
    # the ``error`` event
    code: str | None = None
    message: str | None = None
