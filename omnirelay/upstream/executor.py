"""The upstream executor: sends a provider's UpstreamRequest over pooled keep-alive connections and feeds the
reply back to the provider. All network behaviour (timeouts, connection errors, cancellation) lives here once,
for every HTTP provider.

The client is omnirelay's own lean HTTP/1.1 client (``upstream/http1.py``, llhttp parsing through httptools)
rather than aiohttp's: on the hot path aiohttp's request machinery cost about as much CPU as everything else
the gateway does per request.

Every failure an upstream reports passes through here on its way to becoming the caller's error, so this is
where it is made safe, once for every provider: the texts it carries (message, code, param) are scrubbed of the
upstream's secrets (``core/redact.py``), its Retry-After is bounded, and a reply the provider cannot parse at all
(JSON nested past the decoder's depth, an SSE event over its size limit) becomes a 502 rather than a 500.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import TypeVar

from omnirelay.config import Timeouts, UpstreamConfig
from omnirelay.core.embeddings import EmbeddingRequest, EmbeddingResponse
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import StreamEvent, StreamFailure
from omnirelay.core.image_gen import ImageRequest, ImageResult
from omnirelay.core.redact import Scrubber, secrets_of
from omnirelay.core.types import ChatRequest, ChatResponse
from omnirelay.providers.base import HttpProvider, StreamParser, UpstreamRequest
from omnirelay.upstream.http1 import (
    ConnectFailed,
    ConnectionClosed,
    HTTP1Client,
    InvalidRequestHeader,
    ProtocolViolation,
    Reply,
    ReplyTooLarge,
    UpstreamHTTPError,
    UpstreamTimeout,
)
from omnirelay.wire.sse import SSEEventTooLarge

log = logging.getLogger("omnirelay.upstream")

T = TypeVar("T")


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
    if isinstance(exc, ReplyTooLarge):
        # The same upstream would send the same reply again (and bill it again): not retried.
        return GatewayError("upstream", f"upstream {name} reply too large ({exc})", retryable=False)
    return GatewayError("upstream", f"upstream {name} failed: {type(exc).__name__}")


def _unreadable(name: str, exc: Exception) -> GatewayError:
    """A reply the provider could not turn into anything, for a reason outside its own checks."""
    if isinstance(exc, SSEEventTooLarge):
        return GatewayError("upstream", f"upstream {name} sent a stream event that is too large", retryable=False)
    # RecursionError from JSON nested deeper than the decoder goes, or a provider bug. The exception's text is
    # not logged: it may quote the reply.
    log.warning("upstream %s: reply could not be parsed (%s)", name, type(exc).__name__)
    return GatewayError("upstream", f"upstream {name} sent a reply that could not be parsed")


def scrubber_for(upstream: UpstreamConfig) -> Scrubber:
    """The scrubber for one upstream's error texts: its key and credential-like configured headers."""
    return Scrubber(secrets_of(upstream.api_key, upstream.headers))


class HttpExecutor:
    def __init__(self) -> None:
        self._client: HTTP1Client | None = None
        self._scrubbers: weakref.WeakKeyDictionary[HttpProvider, Scrubber] = weakref.WeakKeyDictionary()

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

    def _scrubber(self, provider: HttpProvider) -> Scrubber:
        scrubber = self._scrubbers.get(provider)
        if scrubber is None:
            scrubber = self._scrubbers[provider] = scrubber_for(provider.upstream)
        return scrubber

    def _error_of(self, provider: HttpProvider, reply: Reply, body: bytes) -> GatewayError:
        """The provider's reading of an error reply, scrubbed: the body's secrets go before the provider sees
        it (it may cut the text short, and a cut-off key is no longer the key), the GatewayError's texts after
        (the provider may have decoded JSON escapes that hid one)."""
        scrubber = self._scrubber(provider)
        try:
            err = provider.parse_error(reply.status, reply.headers, scrubber.scrub_bytes(body))
        except Exception as exc:
            return _unreadable(provider.upstream.name, exc)
        return err.redact(scrubber.scrub)

    async def _send(self, provider: HttpProvider, ureq: UpstreamRequest, timeouts: Timeouts) -> Reply:
        return await self.client.open(
            ureq.method,
            ureq.url,
            ureq.headers,
            ureq.body,
            connect_timeout=timeouts.connect,
            read_timeout=timeouts.first_byte,
            total_timeout=timeouts.total,
            max_body=provider.upstream.max_reply_bytes,
        )

    async def complete(self, provider: HttpProvider, req: ChatRequest, model: str, timeouts: Timeouts) -> ChatResponse:
        body = await self._exchange(provider, timeouts, provider.build_request(req, model))
        return self._parsed(provider, lambda: provider.parse_response(body, req))

    async def count_tokens(self, provider: HttpProvider, req: ChatRequest, model: str, timeouts: Timeouts) -> int:
        """The upstream's own count of ``req``'s input tokens (a provider with the ``count_tokens`` capability)."""
        ureq = provider.build_count_tokens(req, model)
        body = await self._exchange(provider, timeouts, ureq)
        return self._parsed(provider, lambda: provider.parse_count_tokens(body))

    async def embed(
        self, provider: HttpProvider, req: EmbeddingRequest, model: str, timeouts: Timeouts
    ) -> EmbeddingResponse:
        """The vectors of ``req``'s inputs from ``model`` (a provider with the ``embeddings`` capability), with
        the same error mapping and secret scrubbing as a chat call."""
        ureq = provider.build_embeddings(req, model)
        body = await self._exchange(provider, timeouts, ureq)
        return self._parsed(provider, lambda: provider.parse_embeddings(body, req, model))

    async def exchange(self, provider: HttpProvider, ureq: UpstreamRequest, timeouts: Timeouts) -> bytes:
        """Send a request built from what ``provider`` builds (a native batch's upload, create and poll calls,
        omnirelay.batches.native) and read the whole reply: its body, or the upstream's error (scrubbed)."""
        return await self._exchange(provider, timeouts, ureq)

    async def _exchange(self, provider: HttpProvider, timeouts: Timeouts, ureq: UpstreamRequest) -> bytes:
        """Send ``ureq`` and read the whole reply: its body, or the upstream's error (scrubbed) raised."""
        name = provider.upstream.name
        try:
            reply = await self._send(provider, ureq, timeouts)
            try:
                body = await reply.read()
            finally:
                reply.close()
        except UpstreamHTTPError as exc:
            raise _gateway_error(name, exc, "closed the connection mid-reply") from None
        if reply.status >= 400:
            raise self._error_of(provider, reply, body)
        return body

    def _parsed(self, provider: HttpProvider, parse: Callable[[], T]) -> T:
        try:
            return parse()
        except GatewayError as err:
            raise err.redact(self._scrubber(provider).scrub) from None
        except Exception as exc:
            raise _unreadable(provider.upstream.name, exc) from None

    async def generate_images(
        self, provider: HttpProvider, req: ImageRequest, model: str, timeouts: Timeouts
    ) -> ImageResult:
        """The images ``model`` generates for ``req`` (a provider with the ``images`` capability); failures are
        mapped and scrubbed as a chat call's are."""
        body = await self._exchange(provider, timeouts, provider.build_image_request(req, model))
        return self._parsed(provider, lambda: provider.parse_image_response(body, req))

    def stream(
        self,
        provider: HttpProvider,
        req: ChatRequest,
        model: str,
        timeouts: Timeouts,
        stream_format: str | None = None,
        text_runs: bool = False,
    ) -> EventStream:
        """Events of one streamed reply. Errors before the first event raise (the caller may retry);
        errors after it raise too, and the relay turns them into the protocol's error frame. With
        ``stream_format`` (the caller's), a provider whose stream is in that format hands its frames on as
        ``RawFrames`` (``HttpProvider.frame_relay``); else with ``text_runs``, its runs of text deltas may come
        as ``TextRun`` events (``HttpProvider.run_parser``)."""
        parser = provider.frame_relay(req, stream_format) if stream_format is not None else None
        if parser is None and text_runs:
            parser = provider.run_parser(req)
        if parser is None:
            parser = provider.stream_parser(req)
        return EventStream(self._stream_batches(provider, req, model, timeouts, parser))

    async def _stream_batches(
        self, provider: HttpProvider, req: ChatRequest, model: str, timeouts: Timeouts, parser: StreamParser
    ) -> AsyncGenerator[list[StreamEvent], None]:
        """The events parsed from the bytes that arrived between two reads, one list per read."""
        name = provider.upstream.name
        try:
            reply = await self._send(provider, provider.build_request(req, model), timeouts)
        except UpstreamHTTPError as exc:
            raise _gateway_error(name, exc, "closed the connection before replying") from None
        try:
            if reply.status >= 400:
                body = await reply.read()
                raise self._error_of(provider, reply, body)
            while True:
                chunk = await reply.next_chunk()
                if not chunk:
                    break
                events = parser.feed(chunk)
                if events:
                    self._scrub_failures(provider, events)
                    yield events
            events = parser.close()
            if events:
                self._scrub_failures(provider, events)
                yield events
        except UpstreamHTTPError as exc:
            raise _gateway_error(name, exc, "closed the stream mid-way") from None
        except GatewayError as err:
            raise err.redact(self._scrubber(provider).scrub) from None
        except Exception as exc:
            raise _unreadable(name, exc) from None
        finally:
            reply.close()

    def _scrub_failures(self, provider: HttpProvider, events: list[StreamEvent]) -> None:
        """A parser may report a mid-stream failure as an event rather than raise it."""
        for event in events:
            if type(event) is StreamFailure:
                event.error.redact(self._scrubber(provider).scrub)


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
