"""The upstream executor: sends a provider's UpstreamRequest over a pooled aiohttp session and feeds the
reply back to the provider. All network behaviour (timeouts, connection errors, cancellation) lives here once,
for every HTTP provider.

aiohttp rather than httpx: its client is several times cheaper per request, which matters on the hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import aiohttp

from omnirelay.config import Timeouts
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import StreamEvent
from omnirelay.core.types import ChatRequest, ChatResponse
from omnirelay.providers.base import HttpProvider


class HttpExecutor:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        # One ClientTimeout per distinct upstream timeout setting, built once instead of per request.
        self._timeouts: dict[tuple[float, float, float], aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar()
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HttpExecutor used before start()")
        return self._session

    def _timeout(self, t: Timeouts) -> aiohttp.ClientTimeout:
        key = (t.total, t.connect, t.first_byte)
        found = self._timeouts.get(key)
        if found is None:
            # sock_read bounds the wait for the first byte and, after it, any silence mid-stream.
            found = self._timeouts[key] = aiohttp.ClientTimeout(
                total=t.total, connect=t.connect, sock_read=t.first_byte
            )
        return found

    async def complete(self, provider: HttpProvider, req: ChatRequest, model: str, timeouts: Timeouts) -> ChatResponse:
        ureq = provider.build_request(req, model)
        name = provider.upstream.name
        try:
            async with self.session.request(
                ureq.method, ureq.url, data=ureq.body, headers=ureq.headers, timeout=self._timeout(timeouts)
            ) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise provider.parse_error(resp.status, resp.headers, body)
        except TimeoutError:
            raise GatewayError("timeout", f"upstream {name} timed out") from None
        except aiohttp.ClientConnectorError:
            raise GatewayError("upstream", f"cannot connect to upstream {name}") from None
        except aiohttp.ClientError as exc:
            raise GatewayError("upstream", f"upstream {name} failed: {type(exc).__name__}") from None
        return provider.parse_response(body, req)

    def stream(self, provider: HttpProvider, req: ChatRequest, model: str, timeouts: Timeouts) -> EventStream:
        """Events of one streamed reply. Errors before the first event raise (the caller may retry);
        errors after it raise too, and the relay turns them into the protocol's error frame."""
        return EventStream(self._stream_batches(provider, req, model, timeouts))

    async def _stream_batches(
        self, provider: HttpProvider, req: ChatRequest, model: str, timeouts: Timeouts
    ) -> AsyncGenerator[list[StreamEvent], None]:
        """The events parsed from each upstream read, one list per read."""
        ureq = provider.build_request(req, model)
        name = provider.upstream.name
        parser = provider.stream_parser(req)
        try:
            async with self.session.request(
                ureq.method, ureq.url, data=ureq.body, headers=ureq.headers, timeout=self._timeout(timeouts)
            ) as resp:
                if resp.status >= 400:
                    body = await resp.read()
                    raise provider.parse_error(resp.status, resp.headers, body)
                async for chunk in resp.content.iter_any():
                    events = parser.feed(chunk)
                    if events:
                        yield events
                events = parser.close()
                if events:
                    yield events
        except TimeoutError:
            raise GatewayError("timeout", f"upstream {name} timed out") from None
        except aiohttp.ClientConnectorError:
            raise GatewayError("upstream", f"cannot connect to upstream {name}") from None
        except aiohttp.ClientPayloadError:
            raise GatewayError("upstream", f"upstream {name} closed the stream mid-way") from None
        except aiohttp.ClientError as exc:
            raise GatewayError("upstream", f"upstream {name} failed: {type(exc).__name__}") from None
        except asyncio.CancelledError:
            raise


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
