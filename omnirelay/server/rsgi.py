"""The same App served over granian's native RSGI interface instead of ASGI.

RSGI skips what ASGI costs per request in granian: a scope dict built from Rust, an awaitable per ``send``, and
header names and values as bytes. The App keeps speaking ASGI messages (its tests and any other ASGI server
still work); this adapter turns them into RSGI calls: a complete reply is one synchronous ``response_bytes``,
a stream is ``response_stream`` plus one ``send_bytes`` per frame batch.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from omnirelay.server.app import App, create_app
from omnirelay.server.asgi import PARSED_HEADERS, Message

log = logging.getLogger("omnirelay.rsgi")


class _Exchange:
    """One request's ASGI ``receive``/``send`` on top of its RSGI protocol object."""

    __slots__ = ("chunks", "headers", "proto", "read", "status", "stream")

    def __init__(self, proto: Any, chunked: bool) -> None:
        self.proto = proto
        # A body without Content-Length is read chunk by chunk, so read_body's size limit stops it early; with
        # one, the HTTP layer bounds the body by it and read_body has already checked the declared size.
        self.chunks: Any = proto.__aiter__() if chunked else None
        self.read = False
        self.status = 200
        self.headers: list[tuple[str, str]] = []
        self.stream: Any = None

    async def receive(self) -> Message:
        if not self.read:
            if self.chunks is None:
                self.read = True
                return {"type": "http.request", "body": await self.proto(), "more_body": False}
            try:
                return {"type": "http.request", "body": await anext(self.chunks), "more_body": True}
            except StopAsyncIteration:
                self.read = True
                return {"type": "http.request", "body": b"", "more_body": False}
        await self.proto.client_disconnect()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())]
            return
        if kind != "http.response.body":
            return
        body: bytes = message.get("body", b"")
        if self.stream is None:
            if not message.get("more_body", False):
                self.proto.response_bytes(self.status, self.headers, body)
                return
            self.stream = self.proto.response_stream(self.status, self.headers)
        if body:
            try:
                await self.stream.send_bytes(body)
            except Exception:  # the client left: the relay's disconnect watcher (receive) ends the request
                log.debug("client closed the stream", exc_info=True)


class RsgiApp:
    """``__rsgi__`` for granian; start-up and shut-down run on the worker's loop around serving."""

    __slots__ = ("app",)

    def __init__(self, app: App) -> None:
        self.app = app

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.app.startup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.app.shutdown())

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return  # no websockets here
        headers = dict(scope.headers.items())
        exchange = _Exchange(proto, chunked="content-length" not in headers and scope.method != "GET")
        asgi_scope = {
            "type": "http",
            "method": scope.method,
            "path": scope.path,
            "query_string": scope.query_string.encode("latin-1"),
            "headers": (),
            PARSED_HEADERS: headers,
        }
        try:
            await self.app(asgi_scope, exchange.receive, exchange.send)
        finally:
            # granian ends a streamed body when its transport is released, and an exception caught on the way
            # (a reference cycle through its traceback) can keep this exchange alive until the next GC pass.
            exchange.stream = None


def create_rsgi_app() -> RsgiApp:
    """Factory for the server process (``omnirelay serve --interface rsgi``)."""
    return RsgiApp(create_app())
