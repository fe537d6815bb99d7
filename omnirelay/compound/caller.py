"""What a compound engine needs from the gateway: call a public model through normal routing and learn what the
call used and cost. The call pipeline implements it (``omnirelay.compound.pipeline_caller``); tests may fake it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Protocol

import msgspec

from omnirelay.core.events import StreamEvent, UsageReport
from omnirelay.core.types import ChatRequest, ChatResponse, Message, TextPart, Usage


class ModelCaller(Protocol):
    """Each call is admitted against the compound request's caller like a request of its own: it may fail with
    403 (the key may not call the model), 429 (its RPM/TPM, or credit that cannot cover the call's worst case)
    like any upstream failure, and engines treat it as one (a heavy agent that failed)."""

    async def complete(self, req: ChatRequest) -> ChatResponse:
        """One non-streaming call of ``req.model``; ``resp.cost`` is set (USD, 0.0 when the model is unpriced)."""
        ...

    def stream(self, req: ChatRequest) -> AsyncIterator[StreamEvent]:
        """One streaming call: content events (text, reasoning, tool calls, ChoiceEnd), then exactly one final
        ``UsageReport`` whose ``cost`` is set. No StreamStart; a failure raises GatewayError."""
        ...

    def abandoned(self, req: ChatRequest) -> UsageReport:
        """What to charge for a call cancelled after it was sent (an engine stopping at a cap): the upstream has
        read the prompt, so its estimated input tokens at the model's price; what it generated is unknown."""
        ...


class Tally:
    """Running totals over every upstream call of one compound request."""

    __slots__ = ("calls", "cost", "usage")

    def __init__(self) -> None:
        self.usage = Usage()
        self.cost = 0.0
        self.calls = 0

    def add(self, usage: Usage, cost: float | None) -> None:
        self.usage.add(usage)
        self.cost += cost or 0.0
        self.calls += 1

    def add_response(self, resp: ChatResponse) -> None:
        self.add(resp.usage, resp.cost)

    def report(self) -> UsageReport:
        return UsageReport(usage=msgspec.structs.replace(self.usage), cost=round(self.cost, 10))


def sub_request(req: ChatRequest, model: str, **changes: object) -> ChatRequest:
    """A copy of ``req`` for one upstream call: the base model, no omnirelay options, one choice."""
    base: dict[str, object] = {"model": model, "options": {}, "n": 1, "stream": False, "include_usage": False}
    base.update(changes)
    return msgspec.structs.replace(req, **base)


def with_system(messages: Iterable[Message], text: str) -> list[Message]:
    """The conversation with an extra system instruction after the caller's own system messages."""
    out = list(messages)
    at = 0
    while at < len(out) and out[at].role in ("system", "developer"):
        at += 1
    out.insert(at, Message(role="system", content=[TextPart(text=text)]))
    return out


def with_user_note(messages: Iterable[Message], text: str) -> list[Message]:
    """The conversation with ``text`` added to the last user turn (or as a new user turn if it ends otherwise),
    so no provider sees two user turns in a row."""
    out = list(messages)
    if out and out[-1].role == "user":
        last = out[-1]
        out[-1] = msgspec.structs.replace(last, content=[*last.content, TextPart(text=text)])
    else:
        out.append(Message(role="user", content=[TextPart(text=text)]))
    return out


def last_user_text(messages: Iterable[Message]) -> str:
    for msg in reversed(list(messages)):
        if msg.role == "user":
            return msg.text()
    return ""
