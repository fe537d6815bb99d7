"""The gate every request passes: who is calling, may they, and what they used.

``admit`` runs before the upstream call (authentication, allow-lists, limits, credit reservation);
``settle`` runs after it, once per admitted request whatever the outcome, with the usage record. The
relay never touches storage itself: a Gate implementation owns that (``omnirelay.state``).
"""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from collections.abc import Mapping

import msgspec

from omnirelay.config import Config
from omnirelay.core.catalog import Price
from omnirelay.core.errors import GatewayError
from omnirelay.core.pricing import price_for
from omnirelay.core.types import ChatRequest, Usage


class UsageRecord(msgspec.Struct, kw_only=True):
    request_id: str
    created_at: float  # unix time the request arrived
    key_id: str | None
    protocol: str  # inbound protocol: openai | anthropic
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


class Admission(msgspec.Struct, kw_only=True):
    key_id: str | None = None
    key_name: str | None = None
    reserved: float = 0.0  # USD held against the key's credit until settle
    headers: dict[str, str] = {}  # e.g. rate-limit headers for the response


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The caller's key: ``Authorization: Bearer`` (OpenAI) or ``x-api-key`` (Anthropic)."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    return key.strip() if key else None


class Gate(ABC):
    def __init__(self, config: Config) -> None:
        self.config = config

    async def start(self) -> None:
        """Open connections, load caches."""

    async def stop(self) -> None:
        """Flush pending records and close connections."""

    @abstractmethod
    async def admit(self, token: str | None, req: ChatRequest, protocol: str) -> Admission: ...

    @abstractmethod
    async def settle(self, admission: Admission, record: UsageRecord) -> None:
        """Record usage and charge the key. Must not raise: the reply is already on its way. Idempotent per
        admission: the relay settles before a reply's last byte and again, as a no-op, when it finishes."""

    def price(self, model_used: str | None, model_requested: str) -> Price | None:
        overrides = self.config.prices
        found = price_for(model_used, overrides) if model_used else None
        return found if found is not None else price_for(model_requested, overrides)


class MasterKeyGate(Gate):
    """No key store: a single master key if configured, otherwise open. Records are dropped."""

    async def admit(self, token: str | None, req: ChatRequest, protocol: str) -> Admission:
        master = self.config.server.master_key
        if master is not None and (token is None or not hmac.compare_digest(token.encode(), master.encode())):
            raise GatewayError("authentication", "Incorrect API key provided.", code="invalid_api_key")
        return Admission()

    async def settle(self, admission: Admission, record: UsageRecord) -> None:
        return None
