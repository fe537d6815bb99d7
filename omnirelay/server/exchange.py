"""One HTTP request and its response, as route handlers and the relay see them, whatever the server interface.

The gateway is served over granian's RSGI (``server/rsgi.py``, the default) or plain ASGI (``server/asgi.py``).
Handlers used to speak ASGI messages and the RSGI front end translated them back, building and unpacking
message dicts and re-encoding headers on every request; with this interface each front end does the cheapest
thing its server allows, and the handlers do not care which one it is.
"""

from __future__ import annotations

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


class Exchange(ABC):
    """A request (method, path, query string, headers with lower-case names, a body read on demand) and the
    means to answer it: one complete response, or a stream of chunks."""

    __slots__ = ("headers", "method", "path", "query_string")

    def __init__(self, method: str, path: str, query_string: str, headers: dict[str, str]) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers

    @abstractmethod
    async def body(self, limit: int) -> bytes:
        """The whole request body; GatewayError("too_large") past ``limit`` bytes, before reading them where
        the declared length allows; ClientGone if the client leaves first."""

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
