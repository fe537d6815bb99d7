"""One chat request from arrival to usage record: parse (protocol) -> authenticate (gate) -> plan the models
(pipeline) -> admit (gate: the models the key may call, limits, credit) -> call a channel (pipeline: retrying on
another channel while nothing has reached the client) -> render (protocol) -> settle (gate). What is left here is
the client's side: the response, the stream's frames, and the client leaving.
"""

from __future__ import annotations

import asyncio
import logging
import time

from omnirelay.compound.pipeline_caller import install as install_compound
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import StreamEvent, StreamFailure
from omnirelay.core.ids import new_id
from omnirelay.core.records import UsageRecord
from omnirelay.pipeline.calls import CallPipeline, Executor, UpstreamStream
from omnirelay.pipeline.context import CallContext, Disconnected
from omnirelay.pipeline.gate import Admission, Gate, authenticated, bearer_token, compound_admission
from omnirelay.pipeline.observe import Observation
from omnirelay.protocols.base import InboundProtocol, RequestHooks, StreamEncoder
from omnirelay.providers.base import EngineProvider, HttpProvider
from omnirelay.routing.table import RouteTable
from omnirelay.web.exchange import ClientGone, Exchange

log = logging.getLogger("omnirelay.relay")

# How long a call runs before the relay starts watching for its client leaving (see ClientWatch).
WATCH_AFTER_S = 0.2

# A protocol's hooks and what their ``prepare`` returned: run once the answer is complete.
Finished = tuple[RequestHooks, object]


class Relay:
    def __init__(
        self,
        routes: RouteTable,
        providers: dict[str, HttpProvider | EngineProvider],
        executor: Executor,
        gate: Gate,
    ) -> None:
        self.gate = gate
        self.pipeline = CallPipeline(routes, providers, executor, gate)
        # Compound models (think:/heavy:/deepsearch:, the tool loop): engines over the same pipeline, registered
        # with the route table and the pipeline.
        install_compound(self.pipeline)

    async def handle(
        self,
        protocol: InboundProtocol,
        exchange: Exchange,
        body: bytes,
        observation: Observation | None = None,
        admission: Admission | None = None,
    ) -> None:
        """Serve one request; ``observation`` (metrics, traces, access log) is told its record and context.
        ``admission``: the caller, already authenticated by an in-process front end (the console's playground);
        None: the request's own key authenticates it."""
        started = time.time()
        t0 = time.perf_counter()
        headers = exchange.headers
        req = protocol.parse_request(body, headers)
        if admission is None:
            admission = await authenticated(self.gate, bearer_token(headers))
        record = UsageRecord(
            request_id=new_id("req_"),
            created_at=started,
            key_id=admission.key_id,
            protocol=protocol.name,
            model_requested=req.model,
            stream=req.stream,
        )
        if observation is not None:
            observation.record = record
        hooks = protocol.hooks
        pending: object | None = None
        try:
            if hooks is not None:
                pending = await hooks.prepare(req, admission.key_id, self.gate)
            named = self.pipeline.plan(req)
        except GatewayError as err:  # an unknown model (or previous response) is answered, so recorded
            record.status = err.status
            record.error = err.message
            record.latency_ms = (time.perf_counter() - t0) * 1000.0
            await self.gate.settle(admission, record)
            raise
        plan = await self.gate.admit(admission, req, protocol.name, named)  # refused (403, 429): no record
        ctx = CallContext(protocol.name, req, plan, admission, record, t0, exchange.disconnected)
        if observation is not None:
            observation.ctx = ctx
        after = (hooks, pending) if hooks is not None and pending is not None else None
        # The compound engines' upstream calls are admitted against this request's caller (pipeline_caller).
        context = compound_admission.set(admission)
        try:
            if req.stream:
                await self._stream(protocol, exchange, ctx, after)
            else:
                await self._complete(protocol, exchange, ctx, after)
        except GatewayError as err:
            record.status = err.status
            record.error = err.message
            if record.upstream:  # which channel failed last, and after how many attempts
                err.headers.setdefault("x-omnirelay-channel", f"{record.upstream}/{record.model_used}")
                err.headers.setdefault("x-omnirelay-attempts", str(record.attempts))
            err.headers.setdefault("x-omnirelay-overhead-ms", ctx.overhead())
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

    async def _complete(
        self, protocol: InboundProtocol, exchange: Exchange, ctx: CallContext, after: Finished | None
    ) -> None:
        record = ctx.record
        assert ctx.admission is not None
        # Race the upstream call against the client leaving, as the stream path does: a client that gave up
        # must not keep an upstream call running, nor be recorded as served.
        task = asyncio.current_task()
        assert task is not None
        watcher = ClientWatch(ctx.disconnected, task)
        try:
            resp = await self.pipeline.complete(ctx)
        except asyncio.CancelledError:
            if not watcher.left:
                raise
            task.uncancel()
            record.status = 499
            record.error = "client closed the connection"
            raise ClientGone() from None
        finally:
            watcher.stop()
        out = protocol.render_response(resp, ctx.req)
        if after is not None:
            await after[0].finished(after[1], out)
        headers = self._response_headers(record, ctx.admission)
        headers["x-omnirelay-overhead-ms"] = ctx.overhead()
        headers["x-omnirelay-cost"] = f"{record.cost:.10f}".rstrip("0").rstrip(".") or "0"
        # Settle before the reply leaves: a request the client saw complete is then journalled even if the
        # gateway dies the next instant. (The call in handle's finally is a no-op after this.)
        record.latency_ms = (time.perf_counter() - ctx.t0) * 1000.0
        await self.gate.settle(ctx.admission, record)
        await exchange.respond(200, out, headers=headers)

    async def _stream(
        self, protocol: InboundProtocol, exchange: Exchange, ctx: CallContext, after: Finished | None
    ) -> None:
        record = ctx.record
        admission = ctx.admission
        assert admission is not None
        encoder = protocol.stream_encoder(ctx.req)
        # Same-format pass-through unless the protocol's hooks need the encoder to see the whole answer.
        stream = await self.pipeline.stream(ctx, protocol.stream_format if after is None else None)
        client_gone = False
        task = asyncio.current_task()
        assert task is not None
        watcher = ClientWatch(ctx.disconnected, task)
        frames: list[bytes] = []
        try:
            headers = self._response_headers(record, admission)
            headers["x-omnirelay-overhead-ms"] = ctx.overhead()
            await exchange.open_stream(headers)
            if await _send_frames(stream, encoder, exchange, frames):
                cost = stream.settle_usage()
                record.latency_ms = (time.perf_counter() - ctx.t0) * 1000.0
                await self.gate.settle(admission, record)  # before the closing frames: see _complete
                frames.append(encoder.finish(cost))
                result = encoder.result() if after is not None else None
                if after is not None and result is not None:
                    await after[0].finished(after[1], result)
                await exchange.send(b"".join(frames))
        except GatewayError as err:
            stream.fail(err)
            frames.append(encoder.error(err))
            await exchange.send(b"".join(frames))
        except asyncio.CancelledError:
            if not watcher.left:
                raise
            # The client went away: stop the upstream, keep the record.
            task.uncancel()
            client_gone = True
            record.status = 499
            record.error = "client closed the connection"
        finally:
            watcher.stop()
            await stream.aclose()  # ends the lease; charges what was produced if the stream did not complete
        if not client_gone:
            await exchange.close_stream()


async def _send_frames(stream: UpstreamStream, encoder: StreamEncoder, exchange: Exchange, frames: list[bytes]) -> bool:
    """Send the stream's events as frames: everything one upstream read produced in one write. True when the
    stream ended, False when it ended in a failure (whose error frame went out)."""
    pending: list[StreamEvent] | tuple[StreamEvent] = stream.take_ready()
    while True:
        for event in pending:
            if isinstance(event, StreamFailure):
                frames.append(encoder.error(event.error))
                await exchange.send(b"".join(frames))
                return False
            data = encoder.encode(event)
            if data:
                frames.append(data)
        pending = stream.take_ready()
        if pending:
            continue
        if frames:
            await exchange.send(frames[0] if len(frames) == 1 else b"".join(frames))
            frames.clear()
        try:
            pending = (await stream.__anext__(),)
        except StopAsyncIteration:
            return True


class ClientWatch:
    """Cancels the request's task once its client has gone, so that an upstream call nobody waits for stops.

    The watching starts only ``WATCH_AFTER_S`` after the call does: waiting on the server's disconnect signal
    is a task and, over RSGI, an awaited call into granian whose set-up and cancellation cost about a quarter of
    a fast request's CPU (bench/CHANGES.md). A request done sooner never pays it; a client that left in the
    meantime is seen as soon as the watching starts, since the signal is already set by then."""

    __slots__ = ("_disconnected", "_task", "_timer", "_watcher", "left")

    def __init__(self, disconnected: Disconnected | None, task: asyncio.Task[object]) -> None:
        self.left = False  # the client went away and the task was cancelled for it
        self._disconnected = disconnected
        self._task = task
        self._watcher: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(WATCH_AFTER_S, self._start) if disconnected is not None else None

    def _start(self) -> None:
        self._timer = None
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        assert self._disconnected is not None
        try:
            await self._disconnected()
        except Exception:  # the server interface cannot tell: keep serving (an unread task error would be logged)
            log.debug("cannot watch the client connection", exc_info=True)
            return
        self.left = True
        self._task.cancel()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
