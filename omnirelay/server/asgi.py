"""The gateway over plain ASGI: an ``Exchange`` on top of the ASGI ``receive``/``send`` pair.

A framework router and request object would cost more per request than everything else the relay does for a
small completion (see bench/RESULTS.md); the gateway's routes are a table built once from its mounts
(``web/routes.py``), so a dict lookup does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from omnirelay.web.exchange import (
    EVENT_STREAM_HEADERS,
    BodyClock,
    BodyTimeouts,
    ClientGone,
    Exchange,
    declared_length,
    too_large,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("omnirelay.asgi")

_STREAM_HEADERS = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in EVENT_STREAM_HEADERS]


def _encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


class AsgiExchange(Exchange):
    __slots__ = ("_client", "_receive", "_scheme", "_send")

    def __init__(self, scope: Scope, receive: Receive, send: Send, body_timeouts: BodyTimeouts) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        query: bytes = scope.get("query_string", b"")
        super().__init__(scope["method"], scope["path"], query.decode("latin-1"), headers, body_timeouts)
        self._receive = receive
        self._send = send
        client = scope.get("client")
        self._client = str(client[0]) if client else ""
        self._scheme = str(scope.get("scheme", "http"))

    def scheme(self) -> str:
        return self._scheme

    def peer(self) -> str:
        return self._client

    async def _read_body(self, limit: int, clock: BodyClock) -> bytes:
        declared_length(self.headers, limit)
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                total += len(chunk)
                if total > limit:
                    raise too_large(limit)
                chunks.append(chunk)
                clock.tick()
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def respond(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        raw = [(b"content-type", content_type.encode("latin-1"))]
        if headers:
            raw += _encode(headers)
        raw.append((b"content-length", str(len(body)).encode()))
        await self._send({"type": "http.response.start", "status": status, "headers": raw})
        await self._send({"type": "http.response.body", "body": body})

    async def open_stream(self, headers: dict[str, str]) -> None:
        raw = _STREAM_HEADERS + _encode(headers)
        await self._send({"type": "http.response.start", "status": 200, "headers": raw})

    async def send(self, data: bytes) -> None:
        try:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})
        except Exception:  # the client left: the relay's disconnect watcher ends the request
            log.debug("client closed the stream", exc_info=True)

    async def close_stream(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def disconnected(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
