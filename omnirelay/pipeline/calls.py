"""``CallPipeline``: the one way a chat request reaches a channel, for the relay and the compound engines alike.

``plan(req)`` names the models to try (the requested one, with the ``-thinking`` spelling, then its fallbacks),
unless a registered interceptor takes the request (the compound tool loop does, for requests naming server
tools); the gate admits the plan; ``complete(ctx)`` or ``stream(ctx)`` then calls channels through the
dispatcher, retrying on another while nothing has reached the caller. Usage and cost are settled here and only
here: the upstream's usage bounded (``sane_usage``) or, for a stream that never reported it, estimated from what
it produced; the price of the model that answered (or of the fallback name that routed to it); a compound
engine's own reported cost when it is one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from omnirelay.config import Timeouts
from omnirelay.core.catalog import THINKING_SUFFIX
from omnirelay.core.embeddings import EmbeddingRequest, EmbeddingResponse
from omnirelay.core.errors import GatewayError, invalid
from omnirelay.core.estimate import estimated_usage
from omnirelay.core.events import (
    RawFrames,
    ReasoningDelta,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    TextRun,
    ToolCallArgs,
    UsageReport,
)
from omnirelay.core.pricing import cost_of
from omnirelay.core.records import UsageRecord
from omnirelay.core.types import ChatRequest, ChatResponse, Reasoning, Usage
from omnirelay.core.usage_bounds import sane_usage
from omnirelay.pipeline.context import CallContext
from omnirelay.pipeline.gate import COMPOUND_PROVIDER, Gate, Plan, priced_for
from omnirelay.providers.base import EngineProvider, HttpProvider, cannot_embed
from omnirelay.routing.dispatch import Dispatcher, Lease
from omnirelay.routing.table import Channel, Route, RouteTable

log = logging.getLogger("omnirelay.relay")

MAX_FALLBACK_MODELS = 5
MAX_UNPRICED_WARNINGS = 1024


class Executor(Protocol):
    """The HTTP side of a call to an ``HttpProvider``: pooling, timeouts, cancellation."""

    async def complete(
        self, provider: HttpProvider, req: ChatRequest, model: str, timeouts: Timeouts
    ) -> ChatResponse: ...

    def stream(
        self,
        provider: HttpProvider,
        req: ChatRequest,
        model: str,
        timeouts: Timeouts,
        stream_format: str | None = None,
        text_runs: bool = False,
    ) -> AsyncIterator[StreamEvent]: ...

    async def embed(
        self, provider: HttpProvider, req: EmbeddingRequest, model: str, timeouts: Timeouts
    ) -> EmbeddingResponse: ...


# Looks at a request before it is planned and may route it elsewhere as a whole (None: plan it as usual). The
# compound package registers the tool loop's this way, so the pipeline never imports it.
Interceptor = Callable[["CallPipeline", ChatRequest], "Route | None"]


class CallPipeline:
    def __init__(
        self,
        routes: RouteTable,
        providers: dict[str, HttpProvider | EngineProvider],
        executor: Executor,
        gate: Gate,
    ) -> None:
        self.routes = routes
        self.providers = providers
        self.executor = executor
        self.gate = gate
        self.dispatcher = Dispatcher(routes)
        self._interceptors: list[Interceptor] = []
        self._unpriced_warned: set[str] = set()

    def intercept(self, interceptor: Interceptor) -> None:
        """Register ``interceptor``: each request is offered to it before it is planned."""
        self._interceptors.append(interceptor)

    # -- planning ----------------------------------------------------------------------------------------

    def resolve(self, req: ChatRequest) -> Route:
        """The route of ``req.model``; the aggregator spelling ``<model>-thinking`` is the base model with
        extended thinking on (set on ``req``)."""
        try:
            return self.routes.resolve(req.model)
        except GatewayError:
            if req.model.endswith(THINKING_SUFFIX):
                route = self.routes.resolve(req.model[: -len(THINKING_SUFFIX)])
                if req.reasoning is None:
                    req.reasoning = Reasoning(effort="medium")
                return route
            raise

    def plan(self, req: ChatRequest) -> Plan:
        """The models to try in order, each as named and its route: the requested one, then the request's
        fallbacks (``omnirelay.fallbacks`` or OpenRouter's ``models``), then the model's configured ones. An
        unknown fallback name is skipped; an unknown requested model is too when the request names fallbacks
        (as OpenRouter does). The gate then drops the ones the caller may not call."""
        for interceptor in self._interceptors:
            taken = interceptor(self, req)
            if taken is not None:
                return [(req.model, taken)]
        requested = _requested_fallbacks(req)
        try:
            route: Route | None = self.resolve(req)
        except GatewayError:
            if not requested:
                raise
            route = None
        plan: Plan = [(req.model, route)] if route is not None else []
        seen = {req.model}
        for name in [*requested, *(route.fallbacks if route is not None else ())]:
            if len(plan) > MAX_FALLBACK_MODELS:
                break
            if name in seen:
                continue
            seen.add(name)
            try:
                plan.append((name, self.routes.resolve(name)))
            except GatewayError:
                log.info("fallback model %s is not served here; skipped", name)
        if not plan:
            self.resolve(req)  # raises the primary model's not-found error
        return plan

    # -- calling ------------------------------------------------------------------------------------------

    async def complete(self, ctx: CallContext) -> ChatResponse:
        """One non-streaming call; the record and ``resp`` get the bounded usage and the cost."""
        req = ctx.req

        async def call(channel: Channel, timeouts: Timeouts) -> ChatResponse:
            return await self._complete_once(channel, req, timeouts)

        resp, _lease = await self.dispatcher.run(ctx.plan, call, ctx.note_attempt, tenant=ctx.tenant)
        record = ctx.record
        record.ttft_ms = (time.perf_counter() - ctx.t0) * 1000.0
        # What the upstream claims is bounded before it is priced, shown to the client or charged.
        resp.usage = sane_usage(resp.usage)
        resp.cost = self.settle_usage(ctx, resp.usage, resp.cost if record.provider == COMPOUND_PROVIDER else None)
        return resp

    async def stream(
        self, ctx: CallContext, stream_format: str | None = None, text_runs: bool = False
    ) -> UpstreamStream:
        """Try channels until one yields its first content event (text, reasoning, tool call, end of choice).
        Nothing reaches the caller before that, so a failure up to that point, a reset right after the
        upstream's headers included, moves on to the next channel. ``stream_format``: the caller's stream wire
        format, when it can take an upstream stream in that format as ``RawFrames`` (same-format pass-through;
        an HTTP channel whose provider speaks it forwards its frames, any other channel stays canonical).
        ``text_runs``: the caller takes ``TextRun`` events too (an HTTP channel's parser may give them)."""
        req = ctx.req

        async def call(channel: Channel, timeouts: Timeouts) -> tuple[AsyncIterator[StreamEvent], list[StreamEvent]]:
            events = self._stream_once(channel, req, timeouts, stream_format, text_runs)
            head: list[StreamEvent] = []
            try:
                while True:
                    event = await anext(events)
                    if isinstance(event, StreamFailure):
                        raise event.error
                    head.append(event)
                    if not isinstance(event, StreamStart | UsageReport):
                        return events, head
            except StopAsyncIteration:
                if any(not isinstance(e, StreamStart | UsageReport) for e in head):
                    return events, head
                raise GatewayError("upstream", f"upstream {channel.upstream.name} sent an empty stream") from None
            except BaseException:
                await close_events(events)
                raise

        (events, head), lease = await self.dispatcher.run(
            ctx.plan, call, ctx.note_attempt, hold=True, tenant=ctx.tenant
        )
        ctx.record.ttft_ms = (time.perf_counter() - ctx.t0) * 1000.0
        return UpstreamStream(self, ctx, events, head, lease)

    async def embed(self, ctx: CallContext, req: EmbeddingRequest) -> EmbeddingResponse:
        """The vectors of ``req`` from the first channel of the admitted plan that answers, retrying on another
        like a chat call; the record gets the input tokens and their cost. Every channel the plan may reach must
        serve embeddings (400 naming the model otherwise: a chat-only model is not silently skipped)."""
        for route in ctx.plan:
            for channel in route.channels:
                if not self._provider(channel).supports("embeddings"):
                    raise cannot_embed(channel.upstream.name, route.public_name)

        async def call(channel: Channel, timeouts: Timeouts) -> EmbeddingResponse:
            provider = self._provider(channel)
            if isinstance(provider, HttpProvider):
                return await self.executor.embed(provider, req, channel.model, timeouts)
            try:
                return await asyncio.wait_for(provider.embed(req, channel.model), timeout=timeouts.total)
            except TimeoutError:
                raise GatewayError("timeout", f"local model {channel.model} timed out") from None

        resp, _lease = await self.dispatcher.run(ctx.plan, call, ctx.note_attempt, tenant=ctx.tenant)
        ctx.record.ttft_ms = (time.perf_counter() - ctx.t0) * 1000.0
        usage = sane_usage(Usage(input_tokens=resp.input_tokens))  # bounded before it is shown or charged
        resp.input_tokens = usage.input_tokens
        self.settle_usage(ctx, usage, None)
        return resp

    def _provider(self, channel: Channel) -> HttpProvider | EngineProvider:
        return self.providers[channel.upstream.name]

    async def _complete_once(self, channel: Channel, req: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        provider = self._provider(channel)
        if isinstance(provider, HttpProvider):
            return await self.executor.complete(provider, req, channel.model, timeouts)
        try:
            return await asyncio.wait_for(provider.complete(req, channel.model), timeout=timeouts.total)
        except TimeoutError:
            raise GatewayError("timeout", f"local model {channel.model} timed out") from None

    def _stream_once(
        self,
        channel: Channel,
        req: ChatRequest,
        timeouts: Timeouts,
        stream_format: str | None = None,
        text_runs: bool = False,
    ) -> AsyncIterator[StreamEvent]:
        provider = self._provider(channel)
        if isinstance(provider, HttpProvider):
            if stream_format is None and not text_runs:
                return self.executor.stream(provider, req, channel.model, timeouts)
            return self.executor.stream(provider, req, channel.model, timeouts, stream_format, text_runs)
        return provider.stream(req, channel.model)

    # -- cost ---------------------------------------------------------------------------------------------

    def settle_usage(self, ctx: CallContext, usage: Usage, engine_cost: float | None) -> float:
        """The one place a call's usage and cost are decided: ``usage`` (already bounded) on the record, and
        the cost a compound engine reported for its own calls (they may hit different models), else the price
        of the model that answered. Returns the cost."""
        record = ctx.record
        record.usage = usage
        # A compound engine's cost sums its sub-calls', each already at the caller's multiplier.
        record.cost = engine_cost if engine_cost is not None else priced_for(ctx.admission, self.cost(record, ctx.plan))
        return record.cost

    def cost(self, record: UsageRecord, plan: list[Route]) -> float:
        """USD for ``record.usage`` at the price of the model that answered (0 when it has none)."""
        price = self.gate.price(record.model_used, record.model_requested)
        if price is None and len(plan) > 1:  # a fallback answered: its own public name may have the price
            channel = f"{record.upstream}/{record.model_used}"
            for route in plan[1:]:
                if any(c.name == channel for c in route.channels):
                    price = self.gate.price(None, route.public_name)
                    break
        if price is None:
            self._warn_unpriced(record)
            return 0.0
        return cost_of(record.usage, price)

    def _warn_unpriced(self, record: UsageRecord) -> None:
        """Loudly, once per model: a key with credit never gets here (the gate refuses unpriced models), but
        the master key, an open gateway and keys without credit do, and their calls are recorded at 0."""
        model = f"{record.upstream}/{record.model_used}" if record.upstream else str(record.model_used)
        if model in self._unpriced_warned or len(self._unpriced_warned) >= MAX_UNPRICED_WARNINGS:
            return
        self._unpriced_warned.add(model)
        log.warning(
            "model %s (requested as %r) has no price: its calls are recorded at cost 0; add it under `prices:`",
            model,
            record.model_requested,
        )


_NOTHING: list[StreamEvent] = []


class UpstreamStream:
    """The events of a stream a channel opened (``async for``, or ``take_ready`` for every event already read
    without awaiting: the relay writes all that one upstream read produced at once). It owns the rest of the
    call: what was produced, the usage the upstream reported (bounded before anyone sees it), the cost, and the
    channel's lease, ended by ``aclose`` (succeed if the stream ended, fail if it failed, else abandon). A
    ``StreamFailure`` event is the last one it gives; a failure raised while reading is recorded, then raised."""

    __slots__ = (
        "_closed",
        "_ctx",
        "_events",
        "_head",
        "_lease",
        "_next",
        "_over",
        "_pipeline",
        "_settled",
        "_take_ready",
        "completed",
        "failure",
        "produced",
        "reported_cost",
        "usage",
    )

    def __init__(
        self,
        pipeline: CallPipeline,
        ctx: CallContext,
        events: AsyncIterator[StreamEvent],
        head: list[StreamEvent],
        lease: Lease,
    ) -> None:
        self._pipeline = pipeline
        self._ctx = ctx
        self._events = events
        self._lease = lease
        self._next = events.__anext__
        self._take_ready: Callable[[], list[StreamEvent]] | None = getattr(events, "take_ready", None)
        self.usage: Usage | None = None  # as the upstream reported it, bounded
        self.reported_cost: float | None = None  # compound engines report the exact cost of their calls
        self.produced = 0  # characters of text, reasoning and tool arguments: the estimate's base
        self.failure: GatewayError | None = None
        self.completed = False
        self._over = False
        self._closed = False
        self._settled = False
        cut = self._account(head)
        # The events read while the channel was chosen, not yet taken.
        self._head = head if cut is None else head[: cut + 1]

    def __aiter__(self) -> UpstreamStream:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._head:
            return self._head.pop(0)
        if self._over:
            raise StopAsyncIteration
        try:
            event = await self._next()
        except StopAsyncIteration:
            self._over = True
            self.completed = self.failure is None
            raise
        except GatewayError as err:
            self.fail(err)
            raise
        if type(event) is TextDelta:  # the usual event, counted inline: this runs once per upstream read
            self.produced += len(event.text)
        else:
            self._account((event,))
        return event

    def take_ready(self) -> list[StreamEvent]:
        """The events already read and not yet taken (possibly none), without awaiting."""
        head = self._head
        if head:
            self._head = _NOTHING
            return head
        if self._over or self._take_ready is None:
            return _NOTHING
        ready = self._take_ready()
        if not ready:
            return _NOTHING
        cut = self._account(ready)
        return ready if cut is None else ready[: cut + 1]

    def _account(self, events: list[StreamEvent] | tuple[StreamEvent]) -> int | None:
        """Count what ``events`` produced and bound the usage they report. The index of a failure among them
        (the stream is over after it), else None."""
        produced = 0
        cut: int | None = None
        for i, event in enumerate(events):
            if isinstance(event, TextDelta | ReasoningDelta):
                produced += len(event.text)
            elif isinstance(event, ToolCallArgs):
                produced += len(event.arguments)
            elif isinstance(event, RawFrames | TextRun):
                produced += sum(map(len, event.texts))  # a read's tens of texts, in one C-level loop
            elif isinstance(event, UsageReport):
                self.usage = event.usage = sane_usage(event.usage)  # bounded before it is sent or charged
                if event.cost is not None:
                    self.reported_cost = event.cost
            elif isinstance(event, StreamFailure):
                self.fail(event.error)
                self._over = True
                cut = i
                break
        self.produced += produced
        return cut

    def fail(self, err: GatewayError) -> None:
        """The stream failed with ``err`` (read from the upstream, or raised while sending it on)."""
        self.failure = err
        record = self._ctx.record
        record.status = err.status
        record.error = err.message

    def settle_usage(self) -> float:
        """Put the usage and cost on the record (the upstream's usage if it arrived, else an estimate from what
        was produced; the engine's reported cost, else the price of the model) and return the cost."""
        ctx = self._ctx
        usage = self.usage if self.usage is not None else estimated_usage(ctx.req, self.produced)
        self._settled = True
        return self._pipeline.settle_usage(ctx, usage, self.reported_cost)

    async def aclose(self) -> None:
        """Close the upstream stream and end the lease; charge what was produced if nobody settled yet."""
        if self._closed:
            return
        self._closed = True
        await close_events(self._events)
        if self.failure is not None:
            self._lease.fail(self.failure)
        elif self.completed:
            self._lease.succeed()
        else:
            self._lease.abandon()
        if not self._settled:
            self.settle_usage()


async def close_events(events: AsyncIterator[StreamEvent]) -> None:
    closer = getattr(events, "aclose", None)
    if closer is not None:
        try:
            await closer()
        except Exception:  # closing a broken upstream stream must not mask the original outcome
            log.debug("error while closing an upstream stream", exc_info=True)


def _requested_fallbacks(req: ChatRequest) -> list[str]:
    """Fallback models named by the request: ``omnirelay.fallbacks`` or OpenRouter's top-level ``models``
    (taken out of the passthrough fields: no upstream should see it)."""
    found: list[str] = []
    sources: list[tuple[str, Any]] = []
    if "fallbacks" in req.options:
        sources.append(("omnirelay.fallbacks", req.options["fallbacks"]))
    if "models" in req.extra:
        sources.append(("models", req.extra.pop("models")))
    for param, value in sources:
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
            raise invalid(f"`{param}` must be a list of model names", param=param)
        found.extend(value)
    return found
