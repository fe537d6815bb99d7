"""The base of the compound engines: one async event generator per mode (``run``) serves both ``stream`` and
``complete`` (which collects the events into a ChatResponse), so each mode is written once."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, ClassVar

from omnirelay.compound.caller import ModelCaller, Tally
from omnirelay.compound.options import CompoundSettings, Effective, request_options
from omnirelay.core.assemble import MessageAssembler
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import StreamEvent, StreamStart
from omnirelay.core.ids import new_id, now
from omnirelay.core.types import ChatRequest, ChatResponse
from omnirelay.providers.base import EngineProvider

if TYPE_CHECKING:
    from omnirelay.config import UpstreamConfig


class CompoundEngine(EngineProvider):
    family: ClassVar[str] = "compound"
    mode: ClassVar[str]

    def __init__(self, upstream: UpstreamConfig, caller: ModelCaller, settings: CompoundSettings) -> None:
        super().__init__(upstream)
        self.caller = caller
        self.settings = settings

    @abstractmethod
    def run(self, req: ChatRequest, base: str, opts: Effective, tally: Tally) -> AsyncIterator[StreamEvent]:
        """The mode's events after StreamStart: content, UsageReports (from ``tally``) and one ChoiceEnd."""

    def stream(self, req: ChatRequest, model: str) -> AsyncIterator[StreamEvent]:
        return self._events(req, model)

    async def _events(self, req: ChatRequest, model: str) -> AsyncIterator[StreamEvent]:
        opts = request_options(req, self.settings)  # a bad option fails before anything is sent
        tally = Tally()
        yield StreamStart(id=new_id("cmp_"), model=req.model, created=now())
        async for event in self.run(req, model, opts, tally):
            yield event
        yield tally.report()

    async def complete(self, req: ChatRequest, model: str) -> ChatResponse:
        return await collect(self.stream(req, model), req.model)


async def collect(events: AsyncIterator[StreamEvent], model: str) -> ChatResponse:
    """A stream of one choice gathered into a response; ``cost`` is the last UsageReport's."""
    assembler = MessageAssembler()
    async for event in events:
        assembler.add(event)
    start = assembler.start
    rid = start.id if start is not None else new_id("cmp_")
    created = (start.created if start is not None else 0) or now()
    return assembler.response(id=rid, model=model, created=created)


def chunks(text: str, size: int = 160) -> list[str]:
    """Text cut into pieces for streaming an answer that is already complete."""
    return [text[i : i + size] for i in range(0, len(text), size)] or []


def out_of_budget(opts: Effective, tally: Tally) -> str | None:
    """Which cap the totals so far reached, or None."""
    if opts.max_cost is not None and tally.cost >= opts.max_cost:
        return f"the cost cap (${opts.max_cost:g})"
    if opts.max_tokens is not None and tally.usage.total_tokens >= opts.max_tokens:
        return f"the token cap ({opts.max_tokens})"
    return None


def require_text(resp: ChatResponse, what: str) -> str:
    if not resp.choices:
        raise GatewayError("upstream", f"{what}: the upstream returned no choices")
    return resp.choices[0].message.text()
