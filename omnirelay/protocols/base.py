"""What an inbound protocol module implements: its wire format <-> the canonical core. No I/O."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

from omnirelay.core.errors import GatewayError
from omnirelay.core.events import StreamEvent
from omnirelay.core.types import ChatRequest, ChatResponse


class StreamEncoder(ABC):
    """Renders canonical events as the caller's SSE frames. Keeps whatever state the format needs
    (open content blocks, tool-call indices, usage seen so far)."""

    @abstractmethod
    def encode(self, event: StreamEvent) -> bytes:
        """SSE bytes for one event (possibly empty: some events only update state)."""

    @abstractmethod
    def finish(self, cost: float | None = None) -> bytes:
        """The closing frames after the last event (final usage, stop reason, terminator)."""

    @abstractmethod
    def error(self, err: GatewayError) -> bytes:
        """A well-formed error frame that ends the stream mid-way, followed by the format's terminator."""


class InboundProtocol(ABC):
    name: ClassVar[str]  # "openai" or "anthropic": also the family used for passthrough extras

    @abstractmethod
    def parse_request(self, body: bytes, headers: Mapping[str, str]) -> ChatRequest:
        """Decode and validate; raise GatewayError('invalid_request', param=<field path>) on bad input."""

    @abstractmethod
    def render_response(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        """A non-streaming reply body (JSON). Includes ``resp.cost`` where the format has room for it."""

    @abstractmethod
    def stream_encoder(self, req: ChatRequest) -> StreamEncoder: ...

    @abstractmethod
    def render_error(self, err: GatewayError) -> bytes:
        """A JSON error body in this protocol's shape."""
