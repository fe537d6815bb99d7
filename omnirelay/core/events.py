"""Canonical stream events: providers' stream parsers emit these, inbound protocols' stream encoders consume them.

Order guarantees a parser must keep: ``StreamStart`` first; for each choice any number of reasoning, text and
tool-call events; ``ChoiceEnd`` once per choice; ``UsageReport`` any time (the last one is the total, not a
delta); nothing after an ``StreamFailure``.

``RawFrames`` is the exception to "canonical": a same-format stream (``providers/passthrough.py``) hands over the
upstream's own SSE frames, for an inbound protocol of the same wire format to send on as they are. ``TextRun``
is ``TextDelta`` in bulk, only for a caller that asked for it (``CallPipeline.stream(..., text_runs=True)``: the
relay's stream encoders render a run in one go).
"""

from __future__ import annotations

import msgspec

from omnirelay.core.errors import GatewayError
from omnirelay.core.types import Citation, FinishReason, ServerToolCall, Usage


class StreamStart(msgspec.Struct, kw_only=True):
    id: str
    model: str
    created: int = 0


class TextDelta(msgspec.Struct, kw_only=True):
    text: str
    choice: int = 0


class TextRun(msgspec.Struct, kw_only=True):
    """Consecutive text deltas of one choice, as one event: what a parser read of plain text in one upstream read
    (each item is one upstream delta, never empty). Only for callers that asked for runs (see the module's doc)."""

    texts: list[str]
    choice: int = 0


class ReasoningDelta(msgspec.Struct, kw_only=True):
    text: str = ""
    signature: str | None = None  # Anthropic signature_delta
    redacted: str | None = None  # Anthropic redacted_thinking block data
    choice: int = 0


class ToolCallStart(msgspec.Struct, kw_only=True):
    index: int  # position of this call among the choice's tool calls
    id: str
    name: str
    choice: int = 0
    signature: str | None = None  # ToolCall.signature: the upstream's opaque per-call state


class ToolCallArgs(msgspec.Struct, kw_only=True):
    index: int
    arguments: str  # a fragment of the JSON text
    choice: int = 0


class ChoiceEnd(msgspec.Struct, kw_only=True):
    finish_reason: FinishReason
    stop_sequence: str | None = None
    choice: int = 0


class UsageReport(msgspec.Struct, kw_only=True):
    usage: Usage  # cumulative total so far
    # Set only by compound engines, whose usage spans several models: the exact cost so far in USD, which the
    # relay charges instead of pricing ``usage`` at one model's rate.
    cost: float | None = None


class CitationDelta(msgspec.Struct, kw_only=True):
    """A citation for text already streamed (offsets count from the start of the choice's text)."""

    citation: Citation
    choice: int = 0


class ServerToolUse(msgspec.Struct, kw_only=True):
    """A tool the gateway ran itself, with its results (compound models)."""

    call: ServerToolCall
    choice: int = 0


class StreamFailure(msgspec.Struct, kw_only=True):
    """The stream broke after it had started; the inbound protocol ends the client's stream with an error event."""

    error: GatewayError


class RawFrames(msgspec.Struct, kw_only=True):
    """Complete SSE frames exactly as the upstream sent them, in a wire format the inbound protocol declared it can
    forward (``InboundProtocol.stream_format``); only ever produced after the stream's first content event. They
    carry text only: ``texts`` (for the usage estimate, and for an encoder that cannot send ``data`` as it is and
    renders the text itself) of the upstream's choice or content block ``block``."""

    data: bytes
    texts: list[str]
    block: int = 0


StreamEvent = (
    StreamStart
    | TextDelta
    | TextRun
    | ReasoningDelta
    | ToolCallStart
    | ToolCallArgs
    | ChoiceEnd
    | UsageReport
    | StreamFailure
    | CitationDelta
    | ServerToolUse
    | RawFrames
)
