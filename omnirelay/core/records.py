"""The usage record: what one request used, as the gate settles it and the state stores keep it."""

from __future__ import annotations

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
