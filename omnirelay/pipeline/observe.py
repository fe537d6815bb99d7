"""What the pipeline tells an observer (traces, metrics), without knowing who listens: the interfaces the
observability package implements, and the per-request ``Observation`` the server's wiring fills in.

When nothing observes (tracing off), ``current_span`` stays None and no call below reaches a tracer: the hot
path pays one context-variable read per call.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

from omnirelay.core.errors import GatewayError
from omnirelay.core.records import UsageRecord
from omnirelay.core.types import ChatRequest

if TYPE_CHECKING:
    from omnirelay.pipeline.context import CallContext
    from omnirelay.routing.table import Channel


class CallSpan(Protocol):
    """A traced call (a request, or a compound engine's sub-call): the parent of its attempts' spans."""

    def attempt(
        self, channel: Channel, attempt: int, started: float, elapsed: float, error: GatewayError | None
    ) -> None:
        """One upstream attempt ended: ``started`` on time.monotonic()'s clock, ``elapsed`` seconds."""

    def child(self, req: ChatRequest) -> CallSpan:
        """A sub-call's span under this one (a compound engine calling the pipeline)."""

    def end(self, record: UsageRecord, error: BaseException | None) -> None:
        """The call is over; ``record`` says what it used and how it ended."""


# The span of the request being served (None: not traced). Set by the server's wiring around a request;
# ``CallContext`` picks it up, a compound sub-call hangs its own span under it.
current_span: ContextVar[CallSpan | None] = ContextVar("omnirelay_current_span", default=None)


class Observation:
    """One relayed request as the observers see it: filled in by the relay as it learns things."""

    __slots__ = ("ctx", "record")

    def __init__(self) -> None:
        self.record: UsageRecord | None = None  # once the request parsed and the caller is known
        self.ctx: CallContext | None = None  # once it was admitted
