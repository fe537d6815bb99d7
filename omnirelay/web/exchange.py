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
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        clock = BodyClock(self.body_timeouts, task)
        try:
            return await self._read_body(limit, clock)
        except asyncio.CancelledError:
            if clock.expired is None or task.uncancel() > cancelling:
                raise  # cancelled for another reason
            raise _body_timeout(self.body_timeouts, total=clock.expired) from None
        finally:
            clock.stop()

    def peer(self) -> str:
        """The client's address as the server saw it (no port; "" when the server interface does not say)."""
        return ""

    def scheme(self) -> str:
        """``http`` or ``https``, as the connection to this server was made (not what a proxy in front saw)."""
        return "http"

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
    """The body timeouts of one request, as a watchdog: data arriving only notes the time (``tick``); a timer
    at the idle deadline checks whether any came since, and moves itself on or cancels the reading task.
    (One timer per request: cheaper than rescheduling an ``asyncio.timeout`` for every chunk.)"""

    __slots__ = ("deadline", "expired", "idle", "last", "loop", "task", "timer")

    def __init__(self, timeouts: BodyTimeouts, task: asyncio.Task[object]) -> None:
        self.loop = loop = asyncio.get_running_loop()
        self.task = task
        self.idle = timeouts.idle
        self.last = now = loop.time()  # when data last arrived
        self.deadline = now + timeouts.total
        self.expired: bool | None = None  # once it fired: True for the total deadline, False for idleness
        self.timer = loop.call_at(now + self.idle, self._check)

    def tick(self) -> None:
        self.last = self.loop.time()

    def stop(self) -> None:
        self.timer.cancel()

    def _check(self) -> None:
        due = min(self.deadline, self.last + self.idle)
        if self.loop.time() < due - 0.005:  # data came in since: wait for the next deadline
            self.timer = self.loop.call_at(due, self._check)
            return
        self.expired = due >= self.deadline
        self.task.cancel()


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
