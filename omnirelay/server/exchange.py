"""One HTTP request and its response, as route handlers and the relay see them, whatever the server interface.

The gateway is served over granian's RSGI (``server/rsgi.py``, the default) or plain ASGI (``server/asgi.py``).
Handlers used to speak ASGI messages and the RSGI front end translated them back, building and unpacking
message dicts and re-encoding headers on every request; with this interface each front end does the cheapest
thing its server allows, and the handlers do not care which one it is.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from omnirelay.core.errors import GatewayError

JSON = "application/json"
EVENT_STREAM_HEADERS = (
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),  # tell nginx-style proxies in front not to buffer the stream
)


class ClientGone(Exception):
    """The client closed the connection."""


class BodyTimeouts:
    """How long a request body may take: ``total`` seconds in all, and at most ``idle`` seconds with no data
    arriving. Past either the request gets 408 and the connection is closed."""

    __slots__ = ("idle", "total")

    def __init__(self, total: float, idle: float) -> None:
        self.total = total
        self.idle = min(idle, total)


class Exchange(ABC):
    """A request (method, path, query string, headers with lower-case names, a body read on demand) and the
    means to answer it: one complete response, or a stream of chunks."""

    __slots__ = ("body_timeouts", "headers", "method", "path", "query_string")

    def __init__(
        self, method: str, path: str, query_string: str, headers: dict[str, str], body_timeouts: BodyTimeouts
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.body_timeouts = body_timeouts

    async def body(self, limit: int) -> bytes:
        """The whole request body; GatewayError("too_large") past ``limit`` bytes, before reading them where
        the declared length allows; 408 if it is slower than ``body_timeouts`` allow; ClientGone if the
        client leaves first."""
        timeouts = self.body_timeouts
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeouts.total
        try:
            async with asyncio.timeout_at(loop.time() + timeouts.idle) as window:
                data = await self._read_body(limit, BodyClock(loop, window, deadline, timeouts.idle))
        except TimeoutError:
            total = loop.time() >= deadline - 0.01  # (a timer may fire a clock tick early)
            raise _body_timeout(timeouts, total) from None
        return data

    @abstractmethod
    async def _read_body(self, limit: int, clock: BodyClock) -> bytes:
        """Read the body, calling ``clock.tick()`` whenever data arrives (``body`` applies the timeouts)."""

    @abstractmethod
    async def respond(
        self, status: int, body: bytes, content_type: str = JSON, headers: dict[str, str] | None = None
    ) -> None:
        """A complete response."""

    @abstractmethod
    async def open_stream(self, headers: dict[str, str]) -> None:
        """Start a 200 ``text/event-stream`` response."""

    @abstractmethod
    async def send(self, data: bytes) -> None:
        """One chunk of the open stream (dropped quietly if the client has gone: ``disconnected`` says so)."""

    @abstractmethod
    async def close_stream(self) -> None:
        """End the open stream."""

    @abstractmethod
    async def disconnected(self) -> None:
        """Return once the client has closed the connection (never, while it is open)."""


class BodyClock:
    """The running body timeouts: each piece of data that arrives moves the idle deadline on, never past the
    total one."""

    __slots__ = ("deadline", "idle", "loop", "window")

    def __init__(self, loop: asyncio.AbstractEventLoop, window: asyncio.Timeout, deadline: float, idle: float) -> None:
        self.loop = loop
        self.window = window
        self.deadline = deadline
        self.idle = idle

    def tick(self) -> None:
        self.window.reschedule(min(self.deadline, self.loop.time() + self.idle))


def _body_timeout(timeouts: BodyTimeouts, total: bool) -> GatewayError:
    if total:
        message = f"the request body was not received within {timeouts.total:g} s"
    else:
        message = f"no request body data arrived for {timeouts.idle:g} s"
    # The rest of the body may still be on its way: the connection cannot carry another request.
    return GatewayError("invalid_request", message, status=408, code="request_timeout", headers={"connection": "close"})


def declared_length(headers: dict[str, str], limit: int) -> int | None:
    """The request's Content-Length, refused up front if it exceeds ``limit``."""
    declared = headers.get("content-length")
    if declared is None:
        return None
    try:
        size = int(declared)
    except ValueError:
        raise GatewayError("invalid_request", "invalid Content-Length header") from None
    if size > limit:
        raise GatewayError("too_large", f"request body of {size} bytes exceeds the limit of {limit} bytes")
    return size


def too_large(limit: int) -> GatewayError:
    return GatewayError("too_large", f"request body exceeds the limit of {limit} bytes")
