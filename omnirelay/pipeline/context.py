"""``CallContext``: everything one call through the pipeline carries, from admission to the usage record."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from omnirelay.core.records import UsageRecord
from omnirelay.core.types import ChatRequest
from omnirelay.pipeline.gate import Admission
from omnirelay.routing.table import Channel, Route

# Resolves once the caller has gone away (the client closed its connection). None: nobody to watch (a compound
# engine's sub-call, whose outer request watches its own client).
Disconnected = Callable[[], Awaitable[None]]


class CallContext:
    """One admitted call: the request, the routes the gate let it try, who is calling, and the record the
    pipeline fills in (the channel tried, attempts, time to first byte, usage and cost)."""

    __slots__ = ("admission", "disconnected", "plan", "protocol", "record", "req", "t0", "tenant")

    def __init__(
        self,
        protocol: str,
        req: ChatRequest,
        plan: list[Route],
        admission: Admission | None,
        record: UsageRecord,
        t0: float,
        disconnected: Disconnected | None = None,
    ) -> None:
        self.protocol = protocol  # the inbound protocol's name, "compound" for an engine's sub-call
        self.req = req
        self.plan = plan
        self.admission = admission
        self.record = record
        self.t0 = t0  # time.perf_counter() when the request arrived
        self.disconnected = disconnected
        # The caller's key, to which the breakers attribute a channel's failures (None: unattributed).
        self.tenant = admission.key_id if admission is not None else None

    def note_attempt(self, channel: Channel, attempt: int) -> None:
        """The dispatcher is about to call ``channel`` (the ``attempt``-th call): a failure names it."""
        record = self.record
        record.attempts = attempt
        record.upstream = channel.upstream.name
        record.provider = channel.upstream.provider
        record.model_used = channel.model
