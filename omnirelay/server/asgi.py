"""The few ASGI primitives the gateway needs, written directly against the ASGI spec.

A framework router and request object would cost more per request than everything else the relay does for a
small completion (see bench/RESULTS.md); the gateway has a handful of fixed routes, so a dict lookup does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from omnirelay.core.errors import GatewayError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ClientGone(Exception):
    """The client closed the connection."""


# Scope key under which a non-ASGI front end (server/rsgi.py) passes the headers already as a str dict.
PARSED_HEADERS = "omnirelay.headers"


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers, names lower-cased (ASGI already lower-cases them); repeated headers keep the last."""
    parsed: dict[str, str] | None = scope.get(PARSED_HEADERS)
    if parsed is not None:
        return parsed
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes before reading them where possible."""
    declared = headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise GatewayError("invalid_request", "invalid Content-Length header") from None
        if size > limit:
            raise GatewayError("too_large", f"request body of {size} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > limit:
                raise GatewayError("too_large", f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _encode_headers(content_type: bytes, extra: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", content_type)]
    if extra:
        headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
    return headers


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    headers: dict[str, str] | None = None,
) -> None:
    h = _encode_headers(content_type, headers)
    h.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": h})
    await send({"type": "http.response.body", "body": body})


async def start_stream(send: Send, headers: dict[str, str] | None = None) -> None:
    h = _encode_headers(b"text/event-stream; charset=utf-8", headers)
    h.append((b"cache-control", b"no-cache"))
    h.append((b"x-accel-buffering", b"no"))  # tell nginx-style proxies in front not to buffer the stream
    await send({"type": "http.response.start", "status": 200, "headers": h})


async def send_chunk(send: Send, data: bytes, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": data, "more_body": more})
