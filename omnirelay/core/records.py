"""The usage record: what one request used, as the gate settles it and the state stores keep it."""

from __future__ import annotations

from abc import ABC, abstractmethod

import msgspec

from omnirelay.core.types import Usage


class UsageRecord(msgspec.Struct, kw_only=True):
    request_id: str
    created_at: float  # unix time the request arrived
    key_id: str | None
    protocol: str  # inbound protocol: openai | anthropic (compound: a compound engine's sub-call)
    model_requested: str
    upstream: str | None = None  # the channel's upstream name
    provider: str | None = None
    model_used: str | None = None
    stream: bool = False
    usage: Usage = msgspec.field(default_factory=Usage)
    cost: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: int = 200
    error: str | None = None
    attempts: int = 1


DEFAULT_RESPONSE_RETENTION_S = 30 * 86400.0


class StoredResponse(msgspec.Struct, kw_only=True):
    """A Responses API object kept for ``previous_response_id`` and the read endpoints (``store: true``)."""

    id: str  # "resp_..."
    key_id: str | None  # owner; None when the gateway is open (no key)
    created_at: float
    expires_at: float  # created_at + ResponseStore.retention_s
    response: bytes  # the Responses object JSON exactly as returned to the client (final state)
    # JSON array: the input items of THIS request, each with an "id" (as GET /v1/responses/{id}/input_items
    # returns them)
    input_items: bytes
    # JSON array: the full item history to continue from: the previous response's conversation + this
    # request's input items + this response's output items
    conversation: bytes


class ResponseStore(ABC):
    """Where stored responses live (implemented by ``omnirelay.state``). Reads are owner-checked: another key's
    response is answered like a missing one."""

    retention_s: float = DEFAULT_RESPONSE_RETENTION_S  # how long a response is kept (state.responses_retention_s)

    @abstractmethod
    async def put(self, r: StoredResponse) -> None:
        """Store ``r`` (replacing a row with its id and the same owner); too large a one is skipped (logged)."""

    @abstractmethod
    async def get(self, response_id: str, key_id: str | None) -> StoredResponse | None:
        """None when missing, expired, or owned by another key (callers answer 404 either way)."""

    @abstractmethod
    async def delete(self, response_id: str, key_id: str | None) -> bool:
        """Whether a row owned by ``key_id`` and not expired was deleted."""

    async def sweep(self, now: float, limit: int = 1000) -> int:
        """Delete at most ``limit`` rows expired at ``now``; how many went. (A store that keeps nothing in a
        database, e.g. a test double, has nothing to sweep.)"""
        return 0
