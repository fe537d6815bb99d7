"""One chat request from arrival to usage record: parse (protocol) -> authenticate (gate) -> plan the models
(route) -> admit (gate: the models the key may call, limits, credit) -> call a channel (provider + executor),
retrying on another channel while nothing has reached the client -> render (protocol) -> settle (gate).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from omnirelay.compound import tool_loop_route
from omnirelay.config import Timeouts
from omnirelay.core.catalog import THINKING_SUFFIX
from omnirelay.core.errors import GatewayError, invalid
from omnirelay.core.estimate import estimated_usage
from omnirelay.core.events import (
    ReasoningDelta,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    UsageReport,
)
from omnirelay.core.ids import new_id
from omnirelay.core.pricing import cost_of
from omnirelay.core.types import ChatRequest, ChatResponse, Reasoning, Usage
from omnirelay.core.usage_bounds import sane_usage
from omnirelay.protocols.base import InboundProtocol
from omnirelay.providers.base import EngineProvider, HttpProvider
from omnirelay.routing.dispatch import Dispatcher, Lease
from omnirelay.routing.table import Channel, Route, RouteTable
from omnirelay.server.gate import Admission, Gate, UsageRecord, bearer_token, compound_admission
from omnirelay.upstream.executor import HttpExecutor
from omnirelay.web.exchange import ClientGone, Exchange

log = logging.getLogger("omnirelay.relay")

MAX_FALLBACK_MODELS = 5
MAX_UNPRICED_WARNINGS = 1024


class Relay:
    def __init__(
        self,
        routes: RouteTable,
        providers: dict[str, HttpProvider | EngineProvider],
        executor: HttpExecutor,
        gate: Gate,
    ) -> None:
        self.routes = routes
        self.providers = providers
        self.executor = executor
        self.gate = gate
        self.dispatcher = Dispatcher(routes)
        self._unpriced_warned: set[str] = set()
        # Compound models (think:/heavy:/deepsearch:) are engines that call back into this relay.
        from omnirelay.compound.relay_caller import install as install_compound

        install_compound(self)

    # -- routing -----------------------------------------------------------------------------------------

    def _resolve(self, req: ChatRequest) -> Route:
        try:
            return self.routes.resolve(req.model)
        except GatewayError:
            # Aggregator spelling "<model>-thinking": the base model with extended thinking on.
            if req.model.endswith(THINKING_SUFFIX):
                route = self.routes.resolve(req.model[: -len(THINKING_SUFFIX)])
                if req.reasoning is None:
                    req.reasoning = Reasoning(effort="medium")
                return route
            raise

    def _plan(self, req: ChatRequest) -> list[tuple[str, Route]]:
        """The models to try in order, each as named and its route: the requested one, then the request's
        fallbacks (``omnirelay.fallbacks`` or OpenRouter's ``models``), then the model's configured ones. An
        unknown fallback name is skipped; an unknown requested model is too when the request names fallbacks
        (as OpenRouter does). The gate then drops the ones the caller may not call."""
        looped = tool_loop_route(self, req)  # names web_search / fetch / python: the gateway runs the tool loop
        if looped is not None:
            return [(req.model, looped)]
        requested = _requested_fallbacks(req)
        try:
            route: Route | None = self._resolve(req)
        except GatewayError:
            if not requested:
                raise
            route = None
        plan: list[tuple[str, Route]] = [(req.model, route)] if route is not None else []
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
            self._resolve(req)  # raises the primary model's not-found error
        return plan

    def _provider(self, channel: Channel) -> HttpProvider | EngineProvider:
        return self.providers[channel.upstream.name]

    # -- calling one channel ------------------------------------------------------------------------------

    async def _complete_once(self, channel: Channel, req: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        provider = self._provider(channel)
        if isinstance(provider, HttpProvider):
            return await self.executor.complete(provider, req, channel.model, timeouts)
        try:
            return await asyncio.wait_for(provider.complete(req, channel.model), timeout=timeouts.total)
        except TimeoutError:
            raise GatewayError("timeout", f"local model {channel.model} timed out") from None

    def _stream_once(self, channel: Channel, req: ChatRequest, timeouts: Timeouts) -> AsyncIterator[StreamEvent]:
        provider = self._provider(channel)
        if isinstance(provider, HttpProvider):
            return self.executor.stream(provider, req, channel.model, timeouts)
        return provider.stream(req, channel.model)

    # -- the request --------------------------------------------------------------------------------------

    async def handle(self, protocol: InboundProtocol, exchange: Exchange, body: bytes) -> None:
        started = time.time()
        t0 = time.perf_counter()
        request_id = new_id("req_")
        headers = exchange.headers
        req = protocol.parse_request(body, headers)
        admission = self.gate.authenticate(bearer_token(headers))
        record = UsageRecord(
            request_id=request_id,
            created_at=started,
            key_id=admission.key_id,
            protocol=protocol.name,
            model_requested=req.model,
            stream=req.stream,
        )
        try:
            named = self._plan(req)
        except GatewayError as err:  # an unknown model is answered, so recorded
            record.status = err.status
            record.error = err.message
            record.latency_ms = (time.perf_counter() - t0) * 1000.0
            await self.gate.settle(admission, record)
            raise
        plan = await self.gate.admit(admission, req, protocol.name, named)  # refused (403, 429): no record
        # The compound engines' upstream calls are admitted against this request's caller (relay_caller).
        context = compound_admission.set(admission)
        try:
            if req.stream:
                await self._stream(protocol, req, plan, admission, record, t0, exchange)
            else:
                await self._complete(protocol, req, plan, admission, record, t0, exchange)
        except GatewayError as err:
            record.status = err.status
            record.error = err.message
            if record.upstream:  # which channel failed last, and after how many attempts
                err.headers.setdefault("x-omnirelay-channel", f"{record.upstream}/{record.model_used}")
                err.headers.setdefault("x-omnirelay-attempts", str(record.attempts))
            raise
        finally:
            compound_admission.reset(context)
            record.latency_ms = (time.perf_counter() - t0) * 1000.0
            await self.gate.settle(admission, record)

    def _response_headers(self, record: UsageRecord, admission: Admission) -> dict[str, str]:
        headers = {
            "x-request-id": record.request_id,
            "x-omnirelay-attempts": str(record.attempts),
        }
        if record.upstream:
            headers["x-omnirelay-channel"] = f"{record.upstream}/{record.model_used}"
        headers.update(admission.headers)
        return headers

    def _cost(self, record: UsageRecord, plan: list[Route]) -> float:
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
        model = f"{record.upstream}/{record.model_used}"
        if model in self._unpriced_warned or len(self._unpriced_warned) >= MAX_UNPRICED_WARNINGS:
            return
        self._unpriced_warned.add(model)
        log.warning(
            "model %s (requested as %r) has no price: its calls are recorded at cost 0; add it under `prices:`",
            model,
            record.model_requested,
        )

    def _note_attempt(self, record: UsageRecord, channel: Channel, attempt: int) -> None:
        record.attempts = attempt
        record.upstream = channel.upstream.name
        record.provider = channel.upstream.provider
        record.model_used = channel.model

    async def _complete(
        self,
        protocol: InboundProtocol,
        req: ChatRequest,
        plan: list[Route],
        admission: Admission,
        record: UsageRecord,
        t0: float,
        exchange: Exchange,
    ) -> None:
        async def call(channel: Channel, timeouts: Timeouts) -> ChatResponse:
            return await self._complete_once(channel, req, timeouts)

        # Race the upstream call against the client leaving, as the stream path does: a client that gave up
        # must not keep an upstream call running, nor be recorded as served.
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.create_task(_watch_disconnect(exchange, task))
        try:
            resp, _lease = await self.dispatcher.run(
                plan, call, lambda ch, n: self._note_attempt(record, ch, n), tenant=admission.key_id
            )
        except asyncio.CancelledError:
            if not _client_left(watcher):
                raise
            task.uncancel()
            record.status = 499
            record.error = "client closed the connection"
            raise ClientGone() from None
        finally:
            watcher.cancel()
        record.ttft_ms = (time.perf_counter() - t0) * 1000.0
        # What the upstream claims is bounded before it is priced, shown to the client or charged.
        record.usage = resp.usage = sane_usage(resp.usage)
        # A compound engine prices each of its upstream calls itself (they may hit different models).
        record.cost = resp.cost if record.provider == "compound" and resp.cost is not None else self._cost(record, plan)
        resp.cost = record.cost
        out = protocol.render_response(resp, req)
        headers = self._response_headers(record, admission)
        headers["x-omnirelay-cost"] = f"{record.cost:.10f}".rstrip("0").rstrip(".") or "0"
        # Settle before the reply leaves: a request the client saw complete is then journalled even if the
        # gateway dies the next instant. (The call in handle's finally is a no-op after this.)
        record.latency_ms = (time.perf_counter() - t0) * 1000.0
        await self.gate.settle(admission, record)
        await exchange.respond(200, out, headers=headers)

    async def _open_stream(
        self, req: ChatRequest, plan: list[Route], record: UsageRecord, tenant: str | None = None
    ) -> tuple[AsyncIterator[StreamEvent], list[StreamEvent], Lease]:
        """Try channels until one yields its first content event (text, reasoning, tool call, end of choice).
        Nothing goes to the client before that, so a failure up to that point, a reset right after the
        upstream's headers included, moves on to the next channel. Returns the stream, the events read so far,
        and the channel's lease, which the caller ends once the stream is over."""

        async def call(channel: Channel, timeouts: Timeouts) -> tuple[AsyncIterator[StreamEvent], list[StreamEvent]]:
            events = self._stream_once(channel, req, timeouts)
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
                await _aclose(events)
                raise

        (events, head), lease = await self.dispatcher.run(
            plan, call, lambda ch, n: self._note_attempt(record, ch, n), hold=True, tenant=tenant
        )
        return events, head, lease

    async def _stream(
        self,
        protocol: InboundProtocol,
        req: ChatRequest,
        plan: list[Route],
        admission: Admission,
        record: UsageRecord,
        t0: float,
        exchange: Exchange,
    ) -> None:
        events, head, lease = await self._open_stream(req, plan, record, admission.key_id)
        failure: GatewayError | None = None
        completed = False
        record.ttft_ms = (time.perf_counter() - t0) * 1000.0
        try:
            encoder = protocol.stream_encoder(req)
        except BaseException:
            lease.abandon()
            await _aclose(events)
            raise
        usage: Usage | None = None
        reported_cost: float | None = None  # compound engines report the exact cost of their calls
        produced_chars = 0
        client_gone = False
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.create_task(_watch_disconnect(exchange, task))
        # Frames of the events already read go out together, in one write per upstream read (see take_ready).
        frames: list[bytes] = []
        take_ready = getattr(events, "take_ready", None)
        try:
            await exchange.open_stream(self._response_headers(record, admission))
            pending = iter(head)
            event: StreamEvent | None = next(pending)
            while event is not None:
                if isinstance(event, UsageReport):
                    usage = event.usage = sane_usage(event.usage)  # bounded before it is sent: see _complete
                    reported_cost = event.cost if event.cost is not None else reported_cost
                elif isinstance(event, StreamFailure):
                    failure = event.error
                    record.status = event.error.status
                    record.error = event.error.message
                    frames.append(encoder.error(event.error))
                    await exchange.send(b"".join(frames))
                    break
                elif isinstance(event, TextDelta | ReasoningDelta):
                    produced_chars += len(event.text)
                elif isinstance(event, ToolCallArgs):
                    produced_chars += len(event.arguments)
                data = encoder.encode(event)
                if data:
                    frames.append(data)
                event = next(pending, None)
                if event is None:
                    ready = take_ready() if take_ready is not None else None
                    if ready:
                        pending = iter(ready)
                        event = next(pending)
                        continue
                    if frames:
                        await exchange.send(frames[0] if len(frames) == 1 else b"".join(frames))
                        frames.clear()
                    event = await anext(events, None)
            else:
                completed = True
                record.usage = usage if usage is not None else estimated_usage(req, produced_chars)
                record.cost = reported_cost if reported_cost is not None else self._cost(record, plan)
                record.latency_ms = (time.perf_counter() - t0) * 1000.0
                await self.gate.settle(admission, record)  # before the closing frames: see _complete
                frames.append(encoder.finish(record.cost))
                await exchange.send(b"".join(frames))
        except GatewayError as err:
            failure = err
            record.status = err.status
            record.error = err.message
            frames.append(encoder.error(err))
            await exchange.send(b"".join(frames))
        except asyncio.CancelledError:
            if not watcher.done() or watcher.result() is not True:
                raise
            # The client went away: stop the upstream, keep the record.
            task.uncancel()
            client_gone = True
            record.status = 499
            record.error = "client closed the connection"
        finally:
            watcher.cancel()
            await _aclose(events)
            if failure is not None:
                lease.fail(failure)
            elif completed:
                lease.succeed()
            else:
                lease.abandon()
            if record.status != 200 or client_gone:
                # Charge what was produced: upstream usage if it arrived, else an estimate from the text.
                record.usage = usage if usage is not None else estimated_usage(req, produced_chars)
                record.cost = reported_cost if reported_cost is not None else self._cost(record, plan)
        if not client_gone:
            await exchange.close_stream()


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


async def _aclose(events: AsyncIterator[StreamEvent]) -> None:
    closer = getattr(events, "aclose", None)
    if closer is not None:
        try:
            await closer()
        except Exception:  # closing a broken upstream stream must not mask the original outcome
            log.debug("error while closing an upstream stream", exc_info=True)


async def _watch_disconnect(exchange: Exchange, task: asyncio.Task[object]) -> bool:
    """Wait for the client to disconnect, then cancel the request's task. Returns True if it did."""
    try:
        await exchange.disconnected()
    except Exception:  # the server interface cannot tell: keep serving (an unread task error would be logged)
        log.debug("cannot watch the client connection", exc_info=True)
        return False
    task.cancel()
    return True


def _client_left(watcher: asyncio.Task[bool]) -> bool:
    """Whether ``watcher`` (``_watch_disconnect``) saw the client leave and cancelled the request for it."""
    return watcher.done() and not watcher.cancelled() and watcher.result()
