"""``CallContext``: everything one call through the pipeline carries, from admission to the usage record."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from omnirelay.core.errors import GatewayError
from omnirelay.core.records import UsageRecord
from omnirelay.core.types import ChatRequest
from omnirelay.pipeline.gate import Admission
from omnirelay.pipeline.observe import CallSpan, current_span
from omnirelay.routing.dispatch import AttemptEnded
from omnirelay.routing.table import Channel, Route

# Resolves once the caller has gone away (the client closed its connection). None: nobody to watch (a compound
# engine's sub-call, whose outer request watches its own client).
Disconnected = Callable[[], Awaitable[None]]


class CallContext:
    """One admitted call: the request, the routes the gate let it try, who is calling, and the record the
    pipeline fills in (the channel tried, attempts, time to first byte, usage and cost)."""

    __slots__ = (
        "admission",
        "disconnected",
        "overhead_ms",
        "plan",
        "protocol",
        "record",
        "req",
        "span",
        "t0",
        "tenant",
        "upstream_s",
    )

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
        self.upstream_s = 0.0  # seconds spent inside upstream attempts (see attempt_ended)
        self.overhead_ms: float | None = None  # set when the response headers go out (``overhead``)
        self.span: CallSpan | None = current_span.get()  # the trace this call belongs to (None: not traced)

    def note_attempt(self, channel: Channel, attempt: int) -> AttemptEnded:
        """The dispatcher is about to call ``channel`` (the ``attempt``-th call): a failure names it. Returns
        what the dispatcher calls when the attempt ends."""
        record = self.record
        record.attempts = attempt
        record.upstream = channel.upstream.name
        record.provider = channel.upstream.provider
        record.model_used = channel.model
        return self.attempt_ended

    def attempt_ended(
        self, channel: Channel, attempt: int, started: float, elapsed: float, error: GatewayError | None
    ) -> None:
        """An attempt took ``elapsed`` seconds from its start (``started``, time.monotonic()) until the upstream's
        reply was read (a stream: up to its first content event) or it failed."""
        self.upstream_s += elapsed
        if self.span is not None:
            self.span.attempt(channel, attempt, started, elapsed, error)

    def overhead(self) -> str:
        """The ``x-omnirelay-overhead-ms`` value, now: the time since the request arrived not spent inside
        upstream attempts (kept in ``overhead_ms`` for the metrics)."""
        ms = (time.perf_counter() - self.t0 - self.upstream_s) * 1000.0
        self.overhead_ms = ms = ms if ms > 0.0 else 0.0
        return f"{ms:.3f}"
