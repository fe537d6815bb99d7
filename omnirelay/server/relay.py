"""One chat request from arrival to usage record: parse (protocol) -> admit (gate) -> route -> call a channel
(provider + executor), retrying on another channel while nothing has reached the client -> render (protocol)
-> settle (gate).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from omnirelay.core.catalog import THINKING_SUFFIX
from omnirelay.core.errors import GatewayError
from omnirelay.core.estimate import estimate_request_tokens, estimate_text_tokens
from omnirelay.core.events import (
    ReasoningDelta,
    StreamEvent,
    StreamFailure,
    TextDelta,
    ToolCallArgs,
    UsageReport,
)
from omnirelay.core.ids import new_id
from omnirelay.core.pricing import cost_of
from omnirelay.core.types import ChatRequest, ChatResponse, Reasoning, Usage
from omnirelay.protocols.base import InboundProtocol
from omnirelay.providers.base import EngineProvider, HttpProvider
from omnirelay.routing.table import Channel, Route, RouteTable
from omnirelay.server.asgi import Receive, Send, send_bytes, send_chunk, start_stream
from omnirelay.server.gate import Admission, Gate, UsageRecord, bearer_token
from omnirelay.server.upstream import HttpExecutor

log = logging.getLogger("omnirelay.relay")

MAX_FALLBACK_MODELS = 5


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

    def _plan(self, req: ChatRequest, route: Route) -> list[tuple[str, Channel]]:
        """Channels to try in order: the route's own by priority, then each fallback model's."""
        plan: list[tuple[str, Channel]] = [
            (route.public_name, ch) for ch in sorted(route.channels, key=lambda c: c.priority)
        ]
        requested = req.options.get("fallbacks") or req.extra.get("models") or []
        fallbacks = [*route.fallbacks, *(m for m in requested if isinstance(m, str))]
        for name in fallbacks[:MAX_FALLBACK_MODELS]:
            if name == route.public_name:
                continue
            try:
                fb = self.routes.resolve(name)
            except GatewayError:
                continue
            plan.extend((fb.public_name, ch) for ch in sorted(fb.channels, key=lambda c: c.priority))
        return plan

    def _provider(self, channel: Channel) -> HttpProvider | EngineProvider:
        return self.providers[channel.upstream.name]

    # -- calling one channel ------------------------------------------------------------------------------

    async def _complete_once(self, channel: Channel, req: ChatRequest) -> ChatResponse:
        provider = self._provider(channel)
        if isinstance(provider, HttpProvider):
            return await self.executor.complete(provider, req, channel.model, channel.upstream.timeouts)
        try:
            return await asyncio.wait_for(
                provider.complete(req, channel.model), timeout=channel.upstream.timeouts.total
            )
        except TimeoutError:
            raise GatewayError("timeout", f"local model {channel.model} timed out") from None

    def _stream_once(self, channel: Channel, req: ChatRequest) -> AsyncIterator[StreamEvent]:
        provider = self._provider(channel)
        if isinstance(provider, HttpProvider):
            return self.executor.stream(provider, req, channel.model, channel.upstream.timeouts)
        return provider.stream(req, channel.model)

    # -- the request --------------------------------------------------------------------------------------

    async def handle(
        self, protocol: InboundProtocol, headers: dict[str, str], body: bytes, receive: Receive, send: Send
    ) -> None:
        started = time.time()
        t0 = time.perf_counter()
        request_id = new_id("req_")
        req = protocol.parse_request(body, headers)
        admission = await self.gate.admit(bearer_token(headers), req, protocol.name)
        record = UsageRecord(
            request_id=request_id,
            created_at=started,
            key_id=admission.key_id,
            protocol=protocol.name,
            model_requested=req.model,
            stream=req.stream,
        )
        try:
            route = self._resolve(req)
            plan = self._plan(req, route)
            if req.stream:
                await self._stream(protocol, req, plan, admission, record, t0, receive, send)
            else:
                await self._complete(protocol, req, plan, admission, record, t0, send)
        except GatewayError as err:
            record.status = err.status
            record.error = err.message
            raise
        finally:
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

    def _cost(self, record: UsageRecord) -> float:
        price = self.gate.price(record.model_used, record.model_requested)
        return cost_of(record.usage, price) if price is not None else 0.0

    def _note_channel(self, record: UsageRecord, channel: Channel) -> None:
        record.upstream = channel.upstream.name
        record.provider = channel.upstream.provider
        record.model_used = channel.model

    async def _complete(
        self,
        protocol: InboundProtocol,
        req: ChatRequest,
        plan: list[tuple[str, Channel]],
        admission: Admission,
        record: UsageRecord,
        t0: float,
        send: Send,
    ) -> None:
        last: GatewayError | None = None
        resp: ChatResponse | None = None
        for attempt, (_public, channel) in enumerate(plan, start=1):
            record.attempts = attempt
            self._note_channel(record, channel)
            try:
                resp = await self._complete_once(channel, req)
                break
            except GatewayError as err:
                last = err
                if not err.retryable:
                    raise
                log.info("attempt %d on %s failed: %s", attempt, channel.name, err.message)
        if resp is None:
            assert last is not None
            raise last
        record.ttft_ms = (time.perf_counter() - t0) * 1000.0
        record.usage = resp.usage
        record.cost = self._cost(record)
        resp.cost = record.cost
        out = protocol.render_response(resp, req)
        headers = self._response_headers(record, admission)
        headers["x-omnirelay-cost"] = f"{record.cost:.10f}".rstrip("0").rstrip(".") or "0"
        await send_bytes(send, 200, out, headers=headers)

    async def _open_stream(
        self, req: ChatRequest, plan: list[tuple[str, Channel]], record: UsageRecord
    ) -> tuple[AsyncIterator[StreamEvent], StreamEvent]:
        """Try channels until one yields its first event; nothing has been sent to the client yet, so any
        failure before that point may move on to the next channel."""
        last: GatewayError | None = None
        for attempt, (_public, channel) in enumerate(plan, start=1):
            record.attempts = attempt
            self._note_channel(record, channel)
            events = self._stream_once(channel, req)
            try:
                first = await anext(events)
                return events, first
            except StopAsyncIteration:
                last = GatewayError("upstream", f"upstream {channel.upstream.name} sent an empty stream")
            except GatewayError as err:
                await _aclose(events)
                last = err
                if not err.retryable:
                    raise
            log.info("attempt %d on %s failed: %s", attempt, channel.name, last.message)
        assert last is not None
        raise last

    async def _stream(
        self,
        protocol: InboundProtocol,
        req: ChatRequest,
        plan: list[tuple[str, Channel]],
        admission: Admission,
        record: UsageRecord,
        t0: float,
        receive: Receive,
        send: Send,
    ) -> None:
        events, first = await self._open_stream(req, plan, record)
        if isinstance(first, StreamFailure):
            await _aclose(events)
            raise first.error
        record.ttft_ms = (time.perf_counter() - t0) * 1000.0
        encoder = protocol.stream_encoder(req)
        usage: Usage | None = None
        produced_chars = 0
        client_gone = False
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.create_task(_watch_disconnect(receive, task))
        try:
            await start_stream(send, self._response_headers(record, admission))
            event: StreamEvent | None = first
            while event is not None:
                if isinstance(event, UsageReport):
                    usage = event.usage
                elif isinstance(event, StreamFailure):
                    record.status = event.error.status
                    record.error = event.error.message
                    await send_chunk(send, encoder.error(event.error))
                    break
                elif isinstance(event, TextDelta | ReasoningDelta):
                    produced_chars += len(event.text)
                elif isinstance(event, ToolCallArgs):
                    produced_chars += len(event.arguments)
                data = encoder.encode(event)
                if data:
                    await send_chunk(send, data)
                event = await anext(events, None)
            else:
                record.usage = usage if usage is not None else _estimated_usage(req, produced_chars)
                record.cost = self._cost(record)
                await send_chunk(send, encoder.finish(record.cost))
        except GatewayError as err:
            record.status = err.status
            record.error = err.message
            await send_chunk(send, encoder.error(err))
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
            if record.status != 200 or client_gone:
                # Charge what was produced: upstream usage if it arrived, else an estimate from the text.
                record.usage = usage if usage is not None else _estimated_usage(req, produced_chars)
                record.cost = self._cost(record)
        if not client_gone:
            await send_chunk(send, b"", more=False)


def _estimated_usage(req: ChatRequest, produced_chars: int) -> Usage:
    return Usage(input_tokens=estimate_request_tokens(req), output_tokens=estimate_text_tokens(produced_chars))


async def _aclose(events: AsyncIterator[StreamEvent]) -> None:
    closer = getattr(events, "aclose", None)
    if closer is not None:
        try:
            await closer()
        except Exception:  # closing a broken upstream stream must not mask the original outcome
            log.debug("error while closing an upstream stream", exc_info=True)


async def _watch_disconnect(receive: Receive, task: asyncio.Task[object]) -> bool:
    """Wait for the client to disconnect, then cancel the streaming task. Returns True if it did."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            task.cancel()
            return True
