"""The Responses API's stream: canonical events -> ``response.*`` SSE events, each with its ``sequence_number``.

Order, as OpenAI sends it and the SDK's accumulator checks it: ``response.created``, ``response.in_progress``;
per output item ``response.output_item.added``, its parts and deltas (``content_part`` + ``output_text`` for a
message, ``reasoning_summary_part`` + ``reasoning_summary_text`` for reasoning, ``function_call_arguments`` for a
call), their ``.done`` events and ``response.output_item.done``; then ``response.completed`` (or
``response.incomplete`` when the output was cut, ``response.failed`` when the upstream broke) with the whole
response. No ``[DONE]``. An item is closed when an item of another kind starts (function calls stay open until
the end: their arguments may interleave).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from omnirelay.core.errors import GatewayError
from omnirelay.core.events import (
    ChoiceEnd,
    CitationDelta,
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
from omnirelay.core.types import FinishReason, Usage
from omnirelay.protocols.base import StreamEncoder
from omnirelay.wire import openai_responses as wire
from omnirelay.wire.sse import encode_event, json_string_bodies

_encoder = msgspec.json.Encoder()
ItemStatus = Literal["in_progress", "completed", "incomplete"]


class ResponseTemplate(msgspec.Struct, kw_only=True):
    """What the response object echoes of its request, and the id it will have (known before the call, so the
    stream, the final object and the stored copy agree)."""

    response_id: str = msgspec.field(default_factory=lambda: new_id("resp_"))
    created_at: int = msgspec.field(default_factory=now)
    instructions: str | None = None
    max_output_tokens: int | None = None
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: wire.ReasoningEcho | None = None
    store: bool = True
    temperature: float | None = None
    text: wire.TextEcho | None = None
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = []
    top_p: float | None = None
    truncation: str = "disabled"
    user: str | None = None
    metadata: dict[str, str] = {}
    # Upstream function name -> (namespace, name): see openai_responses_input.NAMESPACE_SEPARATOR.
    namespaces: dict[str, tuple[str, str]] = {}

    def function_call(
        self, *, item_id: str, call_id: str, name: str, arguments: str, status: ItemStatus
    ) -> wire.FunctionCall:
        split = self.namespaces.get(name)
        if split is None:
            return wire.FunctionCall(id=item_id, call_id=call_id, name=name, arguments=arguments, status=status)
        return wire.FunctionCall(
            id=item_id, call_id=call_id, name=split[1], arguments=arguments, status=status, namespace=split[0]
        )

    def response(
        self,
        *,
        response_id: str,
        model: str,
        status: wire.ResponseStatus,
        output: list[wire.OutputItem],
        created_at: int,
    ) -> wire.Response:
        return wire.Response(
            id=response_id,
            created_at=self.created_at or created_at,
            status=status,
            instructions=self.instructions,
            max_output_tokens=self.max_output_tokens,
            model=model,
            output=output,
            parallel_tool_calls=self.parallel_tool_calls,
            previous_response_id=self.previous_response_id,
            reasoning=self.reasoning,
            store=self.store,
            temperature=self.temperature,
            text=self.text,
            tool_choice=self.tool_choice,
            tools=self.tools,
            top_p=self.top_p,
            truncation=self.truncation,
            user=self.user,
            metadata=self.metadata,
        )


def usage_of(usage: Usage, cost: float | None) -> wire.ResponseUsage:
    return wire.ResponseUsage(
        input_tokens=usage.input_tokens,
        input_tokens_details=wire.InputTokensDetails(
            cached_tokens=usage.cached_tokens, cache_write_tokens=usage.cache_write_tokens
        ),
        output_tokens=usage.output_tokens,
        output_tokens_details=wire.OutputTokensDetails(reasoning_tokens=usage.reasoning_tokens),
        total_tokens=usage.total_tokens,
        cost=cost if cost is not None else msgspec.UNSET,
    )


def status_of(finish: FinishReason) -> tuple[wire.ResponseStatus, wire.IncompleteDetails | None]:
    """A cut answer is ``incomplete`` with its reason, as OpenAI reports it; anything else ``completed``."""
    if finish == "length":
        return "incomplete", wire.IncompleteDetails(reason="max_output_tokens")
    if finish == "content_filter":
        return "incomplete", wire.IncompleteDetails(reason="content_filter")
    return "completed", None


_TEXT_DELTA_HEAD = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":'


_TEXT_DELTA_TAIL = b',"logprobs":[]}\n\n'


def _delta_mid(item: _OpenItem) -> bytes:
    """A message's text-delta frame between its sequence number and its text (built once per item)."""
    if not item.delta_mid:
        item.delta_mid = b',"item_id":%s,"output_index":%d,"content_index":0,"delta":' % (
            _encoder.encode(item.item_id),
            item.index,
        )
    return item.delta_mid


class _OpenItem:
    """An output item being streamed."""

    __slots__ = (
        "annotations",
        "call_id",
        "delta_mid",
        "index",
        "item_id",
        "kind",
        "name",
        "parts",
        "signature",
        "summary_open",
    )

    def __init__(self, kind: str, index: int, item_id: str) -> None:
        self.kind = kind  # "message", "reasoning" or "function_call"
        self.index = index
        self.item_id = item_id
        self.parts: list[str] = []  # text, summary text or argument fragments
        self.annotations: list[wire.UrlCitation] = []
        self.signature: str | None = None
        self.summary_open = False
        self.call_id = ""
        self.name = ""
        self.delta_mid = b""  # a message's text-delta frame between sequence number and text (_text_delta)

    def item(self, status: ItemStatus, template: ResponseTemplate) -> wire.OutputItem:
        text = "".join(self.parts)
        if self.kind == "message":
            content = [wire.OutputText(text=text, annotations=self.annotations)] if status != "in_progress" else []
            return wire.OutputMessage(id=self.item_id, status=status, content=content)
        if self.kind == "function_call":
            arguments = text if status != "in_progress" else ""
            return template.function_call(
                item_id=self.item_id, call_id=self.call_id, name=self.name, arguments=arguments, status=status
            )
        summary = [wire.SummaryText(text=text)] if text and status != "in_progress" else []
        return wire.ReasoningItem(id=self.item_id, summary=summary, encrypted_content=self.signature)


class ResponsesStreamEncoder(StreamEncoder):
    def __init__(self, model: str, template: ResponseTemplate) -> None:
        self.model = model
        self.template = template
        self.seq = 0
        self.started = False
        self.items: list[_OpenItem] = []  # every item, in output order
        self.open: list[_OpenItem] = []
        self.calls: dict[int, _OpenItem] = {}  # tool-call index -> its item
        self.finish_reason: FinishReason = "stop"
        self.usage = Usage()
        self.final: bytes | None = None

    # -- framing ---------------------------------------------------------------------------------------------

    def _event(self, kind: str, event: msgspec.Struct) -> bytes:
        return encode_event(_encoder.encode(event), kind)

    def _text_delta(self, item: _OpenItem, text: str) -> bytes:
        """The ``response.output_text.delta`` frame that encoding ``wire.OutputTextDelta`` gives, built from its
        parts: the stream's most frequent frame (tests/unit/protocols pins the bytes to the Struct's)."""
        seq = str(self._next()).encode()
        return b"".join((_TEXT_DELTA_HEAD, seq, _delta_mid(item), _encoder.encode(text), _TEXT_DELTA_TAIL))

    def _text_run(self, run: TextRun) -> bytes:
        """The ``response.output_text.delta`` frames of a run, as ``_text_delta`` would encode each, from one
        JSON encode of the texts."""
        texts = run.texts
        if run.choice != 0 or not texts:
            return self._start()
        out = b""
        item = self._current("message") if self.started else None
        if item is None:  # the first delta starts the response or opens the message
            out = self.encode(TextDelta(text=texts[0]))
            texts = texts[1:]
            item = self._current("message")
            if not texts or item is None:
                return out
        item.parts.extend(texts)
        first = self.seq
        self.seq += len(texts)
        frame = b"".join((_TEXT_DELTA_HEAD, b"%d", _delta_mid(item).replace(b"%", b"%%"), b'"%s"', _TEXT_DELTA_TAIL))
        return out + b"".join([frame % numbered for numbered in enumerate(json_string_bodies(texts), first)])

    def _next(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    def _lifecycle(self, kind: str, response: wire.Response) -> bytes:
        return self._event(kind, wire.ResponseLifecycle(type=kind, sequence_number=self._next(), response=response))

    def _response(self, status: wire.ResponseStatus, output: list[wire.OutputItem]) -> wire.Response:
        tpl = self.template
        return tpl.response(response_id=tpl.response_id, model=self.model, status=status, output=output, created_at=0)

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        return self._lifecycle("response.created", self._response("in_progress", [])) + self._lifecycle(
            "response.in_progress", self._response("in_progress", [])
        )

    def _item_event(self, kind: str, item: _OpenItem, status: ItemStatus) -> bytes:
        event = wire.OutputItemEvent(
            type=kind, sequence_number=self._next(), output_index=item.index, item=item.item(status, self.template)
        )
        return self._event(kind, event)

    # -- items -----------------------------------------------------------------------------------------------

    def _open_item(self, kind: str, prefix: str) -> tuple[_OpenItem, bytes]:
        out = self._close(keep_calls=kind == "function_call")
        item = _OpenItem(kind, len(self.items), new_id(prefix))
        self.items.append(item)
        self.open.append(item)
        return item, out

    def _current(self, kind: str) -> _OpenItem | None:
        return self.open[-1] if self.open and self.open[-1].kind == kind else None

    def _message(self) -> tuple[_OpenItem, bytes]:
        item = self._current("message")
        if item is not None:
            return item, b""
        item, out = self._open_item("message", "msg_")
        out += self._item_event("response.output_item.added", item, "in_progress")
        part = wire.ContentPartEvent(
            type="response.content_part.added",
            sequence_number=self._next(),
            item_id=item.item_id,
            output_index=item.index,
            content_index=0,
            part=wire.OutputText(text=""),
        )
        return item, out + self._event(part.type, part)

    def _reasoning(self) -> tuple[_OpenItem, bytes]:
        item = self._current("reasoning")
        if item is not None:
            return item, b""
        item, out = self._open_item("reasoning", "rs_")
        return item, out + self._item_event("response.output_item.added", item, "in_progress")

    def _summary_part(self, item: _OpenItem, kind: str) -> bytes:
        text = "".join(item.parts) if kind.endswith("done") else ""
        event = wire.SummaryPartEvent(
            type=kind,
            sequence_number=self._next(),
            item_id=item.item_id,
            output_index=item.index,
            summary_index=0,
            part=wire.SummaryText(text=text),
        )
        return self._event(kind, event)

    def _close_item(self, item: _OpenItem, status: ItemStatus) -> bytes:
        text = "".join(item.parts)
        out = b""
        item_id, index = item.item_id, item.index
        if item.kind == "message":
            done = wire.OutputTextDone(
                sequence_number=self._next(), item_id=item_id, output_index=index, content_index=0, text=text
            )
            out += self._event("response.output_text.done", done)
            part = wire.ContentPartEvent(
                type="response.content_part.done",
                sequence_number=self._next(),
                item_id=item_id,
                output_index=index,
                content_index=0,
                part=wire.OutputText(text=text, annotations=item.annotations),
            )
            out += self._event(part.type, part)
        elif item.kind == "function_call":
            args = wire.ArgumentsDone(sequence_number=self._next(), item_id=item_id, output_index=index, arguments=text)
            out += self._event("response.function_call_arguments.done", args)
        elif item.summary_open:
            summary = wire.SummaryTextDone(
                sequence_number=self._next(), item_id=item_id, output_index=index, summary_index=0, text=text
            )
            out += self._event("response.reasoning_summary_text.done", summary)
            out += self._summary_part(item, "response.reasoning_summary_part.done")
        return out + self._item_event("response.output_item.done", item, status)

    def _close(self, keep_calls: bool = False, status: ItemStatus = "completed") -> bytes:
        out = b""
        kept: list[_OpenItem] = []
        for item in self.open:
            if keep_calls and item.kind == "function_call":
                kept.append(item)
            else:
                out += self._close_item(item, status)
        self.open = kept
        return out

    # -- canonical events ------------------------------------------------------------------------------------

    def encode(self, event: StreamEvent) -> bytes:
        if type(event) is TextDelta and event.choice == 0 and event.text and self.started:
            item = self._current("message")
            if item is not None:  # the usual event: more text for the open message
                item.parts.append(event.text)
                return self._text_delta(item, event.text)
        if type(event) is TextRun:
            return self._text_run(event)
        if isinstance(event, StreamStart):
            self.model = event.model or self.model
            return self._start()
        out = self._start()
        if getattr(event, "choice", 0) != 0:
            return out  # the Responses API has one output per response
        if isinstance(event, TextDelta):
            if event.text:
                item, opened = self._message()
                item.parts.append(event.text)
                out += opened + self._text_delta(item, event.text)
        elif isinstance(event, ReasoningDelta):
            out += self._reasoning_delta(event)
        elif isinstance(event, ToolCallStart):
            item, opened = self._open_item("function_call", "fc_")
            item.call_id, item.name = event.id, event.name
            self.calls[event.index] = item
            out += opened + self._item_event("response.output_item.added", item, "in_progress")
        elif isinstance(event, ToolCallArgs):
            call = self.calls.get(event.index)
            if call is not None and event.arguments:
                call.parts.append(event.arguments)
                args = wire.ArgumentsDelta(
                    sequence_number=self._next(), item_id=call.item_id, output_index=call.index, delta=event.arguments
                )
                out += self._event("response.function_call_arguments.delta", args)
        elif isinstance(event, CitationDelta):
            target = next((i for i in reversed(self.items) if i.kind == "message"), None)
            if target is not None:
                c = event.citation
                target.annotations.append(
                    wire.UrlCitation(start_index=c.start_index, end_index=c.end_index, url=c.url, title=c.title)
                )
        elif isinstance(event, ChoiceEnd):
            self.finish_reason = event.finish_reason
        elif isinstance(event, UsageReport):
            self.usage = event.usage
        elif isinstance(event, StreamFailure):
            out += self.error(event.error)
        return out

    def _reasoning_delta(self, event: ReasoningDelta) -> bytes:
        if not event.text and not event.signature:
            return b""  # redacted reasoning has nothing to show here
        item, out = self._reasoning()
        if event.signature:
            item.signature = (item.signature or "") + event.signature
        if event.text:
            if not item.summary_open:
                item.summary_open = True
                out += self._summary_part(item, "response.reasoning_summary_part.added")
            item.parts.append(event.text)
            delta = wire.SummaryTextDelta(
                sequence_number=self._next(),
                item_id=item.item_id,
                output_index=item.index,
                summary_index=0,
                delta=event.text,
            )
            out += self._event("response.reasoning_summary_text.delta", delta)
        return out

    # -- the end ---------------------------------------------------------------------------------------------

    def finish(self, cost: float | None = None) -> bytes:
        status, incomplete = status_of(self.finish_reason)
        item_status: ItemStatus = "completed" if status == "completed" else "incomplete"
        out = self._start() + self._close(status=item_status)
        response = self._response(status, [i.item(item_status, self.template) for i in self.items])
        response.incomplete_details = incomplete
        response.usage = usage_of(self.usage, cost)
        response.cost = cost
        self.final = _encoder.encode(response)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._lifecycle(kind, response)

    def error(self, err: GatewayError) -> bytes:
        out = self._start()
        response = self._response("failed", [i.item("incomplete", self.template) for i in self.items])
        code = "rate_limit_exceeded" if err.kind == "rate_limit" else "server_error"
        response.error = wire.ResponseError(code=code, message=err.message)
        response.usage = usage_of(self.usage, None)
        self.final = None  # a failed response is not kept
        return out + self._lifecycle("response.failed", response)

    def result(self) -> bytes | None:
        return self.final
