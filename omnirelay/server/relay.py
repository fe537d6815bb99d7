"""One chat request from arrival to usage record: parse (protocol) -> authenticate (gate) -> plan the models
(pipeline) -> admit (gate: the models the key may call, limits, credit) -> call a channel (pipeline: retrying on
another channel while nothing has reached the client) -> render (protocol) -> settle (gate). What is left here is
the client's side: the response, the stream's frames, and the client leaving.
"""

from __future__ import annotations

import asyncio
import time

from omnirelay.compound.pipeline_caller import install as install_compound
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import StreamEvent, StreamFailure
from omnirelay.core.ids import new_id
from omnirelay.core.records import UsageRecord
from omnirelay.pipeline.calls import CallPipeline, Executor, UpstreamStream
from omnirelay.pipeline.context import CallContext
from omnirelay.pipeline.gate import Admission, Gate, authenticated, bearer_token, compound_admission
from omnirelay.pipeline.observe import Observation
from omnirelay.protocols.base import InboundProtocol, RequestHooks, StreamEncoder
from omnirelay.providers.base import EngineProvider, HttpProvider
from omnirelay.routing.table import RouteTable
from omnirelay.server.client_watch import CLIENT_GONE, ClientWatch
from omnirelay.web.exchange import Exchange

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
        watch = ClientWatch.of_this_task(ctx.disconnected)
        try:
            resp = await self.pipeline.complete(ctx)
        except asyncio.CancelledError as cancelled:
            watch.client_left(record, cancelled)
        finally:
            watch.stop()
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
        # Watched from the start: a reasoning model may think for a minute before its first byte.
        watcher = ClientWatch.of_this_task(ctx.disconnected)
        try:
            # Same-format pass-through unless the protocol's hooks need the encoder to see the whole answer; runs
            # of text deltas always (every encoder renders a TextRun, and keeps its texts for the hooks).
            stream = await self.pipeline.stream(ctx, protocol.stream_format if after is None else None, text_runs=True)
        except asyncio.CancelledError as cancelled:
            watcher.stop()
            watcher.client_left(record, cancelled)
        except BaseException:
            watcher.stop()
            raise
        client_gone = False
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
            watcher.forgive()
            client_gone = True
            record.status, record.error = CLIENT_GONE
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
