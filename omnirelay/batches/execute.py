"""One batch request through the normal call pipeline (routing, retries, fallbacks, breakers), no HTTP loopback:
decode the body with the target endpoint's protocol, plan, check the owner key's allow-list, call, render the
reply as that endpoint would, and settle a usage record at the batch price.

The record's request id is the batch id and the item's index: the usage journal inserts a request id at most
once and charges the key only for an insert, so an item run again after a crash is never charged twice. The
credit was reserved for the whole batch when it was created, so items are not admitted against it again.
"""

from __future__ import annotations

import time

from omnirelay.batches.targets import CHAT_PROTOCOLS, parse_item, render_error
from omnirelay.core.batches import ClaimedItem, ItemResult
from omnirelay.core.errors import GatewayError
from omnirelay.core.pricing import cost_of
from omnirelay.core.records import UsageRecord
from omnirelay.pipeline.calls import CallPipeline
from omnirelay.pipeline.context import CallContext
from omnirelay.pipeline.gate import priced_for
from omnirelay.protocols import openai_embeddings
from omnirelay.state.gate import KeyAdmission, KeyGate
from omnirelay.state.keys import to_units

PROTOCOL = "batch"  # the usage records' protocol
DEFAULT_BATCH_DISCOUNT = 0.5


def item_request_id(batch_id: str, index: int) -> str:
    return f"{batch_id}-{index}"


def batch_cost(gate: KeyGate, record: UsageRecord, admission: KeyAdmission | None = None) -> float:
    """The batch price of what ``record`` used: the price table's ``batch_discount`` of the model that answered
    (or was asked for), at the caller's price multiplier (a console user's group), else the default discount of
    what the pipeline priced (which already applied the multiplier)."""
    price = gate.price(record.model_used, record.model_requested)
    if price is None:
        return round(record.cost * DEFAULT_BATCH_DISCOUNT, 10)
    return priced_for(admission, cost_of(record.usage, price, batch=True))


class ItemExecutor:
    def __init__(self, pipeline: CallPipeline, gate: KeyGate) -> None:
        self.pipeline = pipeline
        self.gate = gate

    def admission(self, key_id: str | None) -> KeyAdmission:
        """The owner's admission, as of the key cache now (a key deleted, disabled or expired since the batch
        was created fails its remaining items with 401)."""
        if key_id is None:
            return KeyAdmission()
        cached = self.gate.keys.get(key_id)
        rec = cached.record if cached is not None else None
        if rec is None or rec.disabled or (rec.expires_at is not None and rec.expires_at <= time.time()):
            raise GatewayError("authentication", f"API key {key_id} is no longer valid.", code="invalid_api_key")
        assert cached is not None
        ownership = cached.ownership
        if ownership is not None and ownership.owner is None:  # a console user's key whose user is gone or disabled
            raise GatewayError("authentication", f"API key {key_id} is no longer valid.", code="invalid_api_key")
        multiplier = ownership.multiplier if ownership is not None else 1.0
        return KeyAdmission(key_id=key_id, key_name=rec.name, key=cached, multiplier=multiplier)

    async def run(self, item: ClaimedItem) -> ItemResult:
        t0 = time.perf_counter()
        record = UsageRecord(
            request_id=item_request_id(item.batch_id, item.index),
            created_at=time.time(),
            key_id=item.key_id,
            protocol=PROTOCOL,
            model_requested="",
        )
        admission = KeyAdmission(key_id=item.key_id)
        try:
            admission = self.admission(item.key_id)
            body = await self._call(item, record, admission, t0)
            status, outcome = 200, "succeeded"
        except GatewayError as err:
            record.status = err.status
            record.error = err.message
            body = render_error(item.endpoint, err)
            status, outcome = err.status, "errored"
        record.cost = batch_cost(self.gate, record, admission) if record.cost else 0.0
        record.latency_ms = (time.perf_counter() - t0) * 1000.0
        await self.gate.settle(admission, record)  # journalled before the result is recorded (see the docstring)
        return ItemResult(
            outcome=outcome,  # type: ignore[arg-type]  # one of the two literals above
            status_code=status,
            body=body,
            request_id=record.request_id,
            cost_units=to_units(record.cost),
        )

    async def _call(self, item: ClaimedItem, record: UsageRecord, admission: KeyAdmission, t0: float) -> bytes:
        parsed = parse_item(item.endpoint, item.body)
        req = parsed.chat
        record.model_requested = req.model
        routes = self.gate.permitted(admission, req, self.pipeline.plan(req))
        ctx = CallContext(PROTOCOL, req, routes, admission, record, t0)
        if parsed.embedding is not None:
            vectors = await self.pipeline.embed(ctx, parsed.embedding)
            return openai_embeddings.render_response(vectors, parsed.embedding)
        resp = await self.pipeline.complete(ctx)
        resp.cost = batch_cost(self.gate, record, admission)
        return CHAT_PROTOCOLS[item.endpoint].render_response(resp, req)
