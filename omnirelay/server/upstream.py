"""The upstream executor: sends a provider's UpstreamRequest over pooled keep-alive connections and feeds the
reply back to the provider. All network behaviour (timeouts, connection errors, cancellation) lives here once,
for every HTTP provider.

The client is omnirelay's own lean HTTP/1.1 client (``server/http1.py``, llhttp parsing through httptools)
rather than aiohttp's: on the hot path aiohttp's request machinery cost about as much CPU as everything else
the gateway does per request.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from omnirelay.config import Timeouts
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import StreamEvent
from omnirelay.core.types import ChatRequest, ChatResponse
from omnirelay.providers.base import HttpProvider
from omnirelay.server.http1 import (
    ConnectFailed,
    ConnectionClosed,
    HTTP1Client,
    InvalidRequestHeader,
    ProtocolViolation,
    Reply,
    UpstreamHTTPError,
    UpstreamTimeout,
)


def _gateway_error(name: str, exc: UpstreamHTTPError, midway: str) -> GatewayError:
    if isinstance(exc, UpstreamTimeout):
        return GatewayError("timeout", f"upstream {name} timed out")
    if isinstance(exc, ConnectFailed):
        return GatewayError("upstream", f"cannot connect to upstream {name}")
    if isinstance(exc, ConnectionClosed):
        return GatewayError("upstream", f"upstream {name} {midway}")
    if isinstance(exc, InvalidRequestHeader):
        return GatewayError("upstream", f"upstream {name}: {exc} (check its configured headers and key)")
    if isinstance(exc, ProtocolViolation):
        return GatewayError("upstream", f"upstream {name} sent a malformed HTTP reply")
    return GatewayError("upstream", f"upstream {name} failed: {type(exc).__name__}")


class HttpExecutor:
    def __init__(self) -> None:
        self._client: HTTP1Client | None = None

    async def start(self) -> None:
        self._client = HTTP1Client(keepalive=60.0)

    async def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> HTTP1Client:
        if self._client is None:
            raise RuntimeError("HttpExecutor used before start()")
        return self._client

    async def _open(self, provider: HttpProvider, req: ChatRequest, model: str, timeouts: Timeouts) -> Reply:
        ureq = provider.build_request(req, model)
        return await self.client.open(
            ureq.method,
            ureq.url,
            ureq.headers,
            ureq.body,
            connect_timeout=timeouts.connect,
            read_timeout=timeouts.first_byte,
            total_timeout=timeouts.total,
        )

    async def complete(self, provider: HttpProvider, req: ChatRequest, model: str, timeouts: Timeouts) -> ChatResponse:
        name = provider.upstream.name
        try:
            reply = await self._open(provider, req, model, timeouts)
            try:
                body = await reply.read()
            finally:
                reply.close()
        except UpstreamHTTPError as exc:
            raise _gateway_error(name, exc, "closed the connection mid-reply") from None
        if reply.status >= 400:
            raise provider.parse_error(reply.status, reply.headers, body)
        return provider.parse_response(body, req)

    def stream(self, provider: HttpProvider, req: ChatRequest, model: str, timeouts: Timeouts) -> EventStream:
        """Events of one streamed reply. Errors before the first event raise (the caller may retry);
        errors after it raise too, and the relay turns them into the protocol's error frame."""
        return EventStream(self._stream_batches(provider, req, model, timeouts))

    async def _stream_batches(
        self, provider: HttpProvider, req: ChatRequest, model: str, timeouts: Timeouts
    ) -> AsyncGenerator[list[StreamEvent], None]:
        """The events parsed from the bytes that arrived between two reads, one list per read."""
        name = provider.upstream.name
        parser = provider.stream_parser(req)
        try:
            reply = await self._open(provider, req, model, timeouts)
        except UpstreamHTTPError as exc:
            raise _gateway_error(name, exc, "closed the connection before replying") from None
        try:
            if reply.status >= 400:
                body = await reply.read()
                raise provider.parse_error(reply.status, reply.headers, body)
            while True:
                chunk = await reply.next_chunk()
                if not chunk:
                    break
                events = parser.feed(chunk)
                if events:
                    yield events
            events = parser.close()
            if events:
                yield events
        except UpstreamHTTPError as exc:
            raise _gateway_error(name, exc, "closed the stream mid-way") from None
        finally:
            reply.close()


class EventStream:
    """An upstream stream's events, one at a time (``async for``), plus ``take_ready``: the events already
    parsed from the last read, without awaiting. The relay uses it to turn everything one upstream read produced
    into a single write to the client instead of one per event."""

    __slots__ = ("_batches", "_pos", "_ready")

    def __init__(self, batches: AsyncGenerator[list[StreamEvent], None]) -> None:
        self._batches = batches
        self._ready: list[StreamEvent] = []
        self._pos = 0

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        while self._pos >= len(self._ready):
            self._ready = await anext(self._batches)  # StopAsyncIteration ends the stream
            self._pos = 0
        event = self._ready[self._pos]
        self._pos += 1
        return event

    def take_ready(self) -> list[StreamEvent]:
        ready = self._ready[self._pos :] if self._pos else self._ready
        self._ready = []
        self._pos = 0
        return ready

    async def aclose(self) -> None:
        await self._batches.aclose()
