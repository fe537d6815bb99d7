"""The gateway over granian's native RSGI interface (the default; ``--interface asgi`` serves plain ASGI).

RSGI skips what ASGI costs per request in granian: a scope dict built from Rust, an awaitable per ``send``, and
header names and values as bytes. A complete reply is one synchronous ``response_bytes``; a stream is
``response_stream`` plus one ``send_bytes`` per frame batch.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from omnirelay.server.app import App, create_app
from omnirelay.web.exchange import (
    EVENT_STREAM_HEADERS,
    BodyClock,
    BodyTimeouts,
    ClientGone,
    Exchange,
    declared_length,
    too_large,
)

log = logging.getLogger("omnirelay.rsgi")


class RsgiExchange(Exchange):
    """One request's ``Exchange`` on its RSGI protocol object."""

    __slots__ = ("_proto", "_scope", "_stream")

    def __init__(self, scope: Any, proto: Any, body_timeouts: BodyTimeouts) -> None:
        super().__init__(scope.method, scope.path, scope.query_string, dict(scope.headers.items()), body_timeouts)
        self._proto = proto
        self._scope = scope
        self._stream: Any = None

    def scheme(self) -> str:
        return str(getattr(self._scope, "scheme", "http") or "http")

    def peer(self) -> str:
        client = str(getattr(self._scope, "client", "") or "")
        return client.rsplit(":", 1)[0] if client.count(":") == 1 else client.removeprefix("[").split("]:")[0]

    async def _read_body(self, limit: int, clock: BodyClock) -> bytes:
        # Chunk by chunk, not ``await proto()``: each chunk moves the idle deadline on, and a client that
        # leaves mid-body ends the iteration early (where the whole-body call raises) instead of an error.
        declared = declared_length(self.headers, limit)
        chunks: list[bytes] = []
        total = 0
        async for chunk in self._proto:
            if chunk:
                total += len(chunk)
                if total > limit:
                    raise too_large(limit)
                chunks.append(chunk)
                clock.tick()
                if total == declared:
                    # All that was promised is here: not waiting for granian to say the body ended saves a
                    # hand-off between its I/O threads and this loop per request (bench/CHANGES.md).
                    break
        if declared is not None and total < declared:
            raise ClientGone()  # the connection ended before the promised body did
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def respond(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        raw = [("content-type", content_type)]
        if headers:
            raw += headers.items()
        self._proto.response_bytes(status, raw, body)

    async def open_stream(self, headers: dict[str, str]) -> None:
        self._stream = self._proto.response_stream(200, [*EVENT_STREAM_HEADERS, *headers.items()])

    async def send(self, data: bytes) -> None:
        if data:
            try:
                await self._stream.send_bytes(data)
            except Exception:  # the client left: the relay's disconnect watcher ends the request
                log.debug("client closed the stream", exc_info=True)

    async def close_stream(self) -> None:
        # granian ends a streamed body when its transport is released; an exception caught on the way (a
        # reference cycle through its traceback) could otherwise keep it alive until the next GC pass.
        self._stream = None

    async def disconnected(self) -> None:
        await self._proto.client_disconnect()


class RsgiApp:
    """``__rsgi__`` for granian; start-up and shut-down run on the worker's loop around serving."""

    __slots__ = ("app", "body_timeouts")

    def __init__(self, app: App) -> None:
        self.app = app
        self.body_timeouts = app.body_timeouts

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.app.startup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.app.shutdown())

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return  # no websockets here
        exchange = RsgiExchange(scope, proto, self.body_timeouts)
        try:
            await self.app.handle(exchange)
        finally:
            exchange._stream = None  # see close_stream


def create_rsgi_app() -> RsgiApp:
    """Factory for the server process (``omnirelay serve --interface rsgi``)."""
    return RsgiApp(create_app())
