"""The one events -> message assembler: a choice's canonical stream events gathered into the assistant message
(and the ChatResponse) they describe. Pure: it only accumulates what it is given.

It keeps what a streaming encoder keeps, so a collected answer and a streamed one say the same: text deltas
joined into one text part; reasoning text joined until a signature closes a part (Anthropic's signed thinking
blocks, which a tool loop must send back verbatim) or a redacted block comes; tool calls by their index, in
index order, each with its argument fragments joined; citations and server tool runs in arrival order; the
last ChoiceEnd's finish reason; and the last UsageReport, which is a running total, not a delta. Events carry a
choice number; the assembler serves one choice, as every caller of it asks for one."""

from __future__ import annotations

from omnirelay.core.events import (
    ChoiceEnd,
    CitationDelta,
    ReasoningDelta,
    ServerToolUse,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.types import (
    ChatResponse,
    Choice,
    Citation,
    FinishReason,
    Message,
    ReasoningPart,
    ServerToolCall,
    TextPart,
    ToolCall,
    Usage,
)


class MessageAssembler:
    """Feed it events with ``add``; read the message with ``message`` or the whole answer with ``response``."""

    def __init__(self) -> None:
        self.start: StreamStart | None = None
        self.text: list[str] = []  # every TextDelta's text, in order (empty ones too)
        self.reasoning: list[ReasoningPart] = []
        self.calls: dict[int, ToolCall] = {}
        self.citations: list[Citation] = []
        self.server_tools: list[ServerToolCall] = []
        self.end: ChoiceEnd | None = None
        self.usage = Usage()
        self.cost: float | None = None

    def add(self, event: StreamEvent) -> None:
        """Take one event. A StreamFailure raises its error: the answer cannot be whole."""
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self._add_reasoning(event)
        elif isinstance(event, ToolCallStart):
            self.calls[event.index] = ToolCall(id=event.id, name=event.name, arguments="", signature=event.signature)
        elif isinstance(event, ToolCallArgs):
            call = self.calls.get(event.index)
            if call is not None:  # arguments for a call never started have nothing to belong to
                call.arguments += event.arguments
        elif isinstance(event, ChoiceEnd):
            self.end = event
        elif isinstance(event, UsageReport):
            self.usage, self.cost = event.usage, event.cost
        elif isinstance(event, CitationDelta):
            self.citations.append(event.citation)
        elif isinstance(event, ServerToolUse):
            self.server_tools.append(event.call)
        elif isinstance(event, StreamStart):
            self.start = event
        elif isinstance(event, StreamFailure):
            raise event.error

    def _add_reasoning(self, event: ReasoningDelta) -> None:
        parts = self.reasoning
        if event.redacted is not None:
            parts.append(ReasoningPart(redacted=event.redacted))
        if event.text:
            if not parts or parts[-1].signature is not None or parts[-1].redacted:
                parts.append(ReasoningPart())  # a signed or redacted part is complete: this text starts the next
            parts[-1].text += event.text
        if event.signature is not None:
            if not parts or parts[-1].redacted:
                parts.append(ReasoningPart())
            parts[-1].signature = event.signature

    @property
    def finish_reason(self) -> FinishReason:
        """The choice's finish reason; "stop" when no ChoiceEnd came."""
        return "stop" if self.end is None else self.end.finish_reason

    def tool_calls(self) -> list[ToolCall]:
        return [self.calls[i] for i in sorted(self.calls)]

    def message(self, tool_calls: list[ToolCall] | None = None) -> Message:
        """The assistant message; ``tool_calls`` replaces the calls gathered (a tool loop sends back only some)."""
        text = "".join(self.text)
        return Message(
            role="assistant",
            content=[TextPart(text=text)] if text else [],
            tool_calls=self.tool_calls() if tool_calls is None else tool_calls,
            reasoning=self.reasoning,
            citations=self.citations,
            server_tools=self.server_tools,
        )

    def response(self, *, id: str, model: str, created: int) -> ChatResponse:
        """The answer as one response (``cost``: the last UsageReport's)."""
        end = self.end
        choice = Choice(
            index=0,
            message=self.message(),
            finish_reason=self.finish_reason,
            stop_sequence=None if end is None else end.stop_sequence,
        )
        return ChatResponse(id=id, model=model, created=created, choices=[choice], usage=self.usage, cost=self.cost)
