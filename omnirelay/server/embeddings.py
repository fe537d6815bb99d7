"""``POST /v1/embeddings`` (OpenAI's Embeddings API): parse -> authenticate -> plan -> admit -> embed -> render
-> settle, the chat relay's steps through the same gate and pipeline. The key's allow-list, RPM/TPM and credit
reservation apply as to a chat call (the gate sees ``core.embeddings.admission_request``: the inputs and no
output); the charge is the input tokens the upstream counted, at the model's input price, and every admitted
request leaves a usage record with protocol ``openai_embeddings``.
"""

from __future__ import annotations

import asyncio
import time

from omnirelay.core.embeddings import admission_request
from omnirelay.core.errors import GatewayError
from omnirelay.core.ids import new_id
from omnirelay.core.records import UsageRecord
from omnirelay.observability.observer import Observability
from omnirelay.pipeline.calls import CallPipeline
from omnirelay.pipeline.context import CallContext
from omnirelay.pipeline.gate import Gate, authenticated, bearer_token
from omnirelay.pipeline.observe import Observation
from omnirelay.protocols import openai_embeddings as protocol
from omnirelay.server.client_watch import ClientWatch
from omnirelay.web.exchange import Exchange
from omnirelay.web.routes import Endpoint, Mount


class EmbeddingsEndpoint:
    def __init__(self, pipeline: CallPipeline, gate: Gate, max_body: int) -> None:
        self.pipeline = pipeline
        self.gate = gate
        self.max_body = max_body

    def mount(self, observability: Observability) -> Mount:
        handler = observability.handler(protocol.PROTOCOL_NAME, self.max_body, self.handle, protocol.OPERATION)
        endpoints = [Endpoint("POST", path, handler) for path in protocol.EMBEDDINGS_PATHS]
        return Mount("", endpoints, protocol.render_error)

    async def handle(self, exchange: Exchange, body: bytes, observation: Observation) -> None:
        started = time.time()
        t0 = time.perf_counter()
        req = protocol.parse_request(body)
        admission = await authenticated(self.gate, bearer_token(exchange.headers))
        record = UsageRecord(
            request_id=new_id("req_"),
            created_at=started,
            key_id=admission.key_id,
            protocol=protocol.PROTOCOL_NAME,
            model_requested=req.model,
        )
        observation.record = record
        gate_req = admission_request(req)
        try:
            named = self.pipeline.plan(gate_req)
        except GatewayError as err:  # an unknown model is answered, so recorded
            record.status = err.status
            record.error = err.message
            record.latency_ms = (time.perf_counter() - t0) * 1000.0
            await self.gate.settle(admission, record)
            raise
        plan = await self.gate.admit(admission, gate_req, protocol.PROTOCOL_NAME, named)  # refused: no record
        ctx = CallContext(protocol.PROTOCOL_NAME, gate_req, plan, admission, record, t0, exchange.disconnected)
        observation.ctx = ctx
        watch = ClientWatch.of_this_task(exchange.disconnected)
        try:
            try:
                resp = await self.pipeline.embed(ctx, req)
            except asyncio.CancelledError as cancelled:
                watch.client_left(record, cancelled)
            finally:
                watch.stop()
            out = protocol.render_response(resp, req)
            headers = {"x-request-id": record.request_id, "x-omnirelay-attempts": str(record.attempts)}
            if record.upstream:
                headers["x-omnirelay-channel"] = f"{record.upstream}/{record.model_used}"
            headers["x-omnirelay-cost"] = f"{record.cost:.10f}".rstrip("0").rstrip(".") or "0"
            headers.update(admission.headers)
            # Settled before the reply leaves, as the relay does (the call in finally is then a no-op).
            record.latency_ms = (time.perf_counter() - t0) * 1000.0
            await self.gate.settle(admission, record)
            await exchange.respond(200, out, headers=headers)
        except GatewayError as err:
            record.status = err.status
            record.error = err.message
            raise
        finally:
            record.latency_ms = record.latency_ms or (time.perf_counter() - t0) * 1000.0
            await self.gate.settle(admission, record)
