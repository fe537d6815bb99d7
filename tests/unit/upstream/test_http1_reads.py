"""upstream/http1.py against a local socket: however the reply's bytes are split into reads (the whole reply in
one, every byte in its own), the reader gets exactly the body, a cut or garbled chunk is an error, and the
connection is reused. The parser's body pieces are handed over once per read (bench/CHANGES.md section 20)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable

import pytest

from omnirelay.upstream.http1 import HTTP1Client, ProtocolViolation

EVENTS = [b'data: {"choices":[{"delta":{"content":"w%d "}}]}\n\n' % i for i in range(20)] + [b"data: [DONE]\n\n"]
STREAM = b"".join(EVENTS)
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"


def chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


Writer = Callable[[asyncio.StreamWriter, bytes], Awaitable[None]]


async def whole(writer: asyncio.StreamWriter, reply: bytes) -> None:
    writer.write(reply)


async def bytewise(writer: asyncio.StreamWriter, reply: bytes) -> None:
    for i in range(len(reply)):
        writer.write(reply[i : i + 1])
        await writer.drain()
        await asyncio.sleep(0)  # each byte its own read on the other side


async def serve(reply: bytes, write: Writer, requests: int) -> tuple[list[bytes], int]:
    """Answer ``requests`` requests on one client connection each with ``reply``; the bodies the client read."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                size = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if b"content-length" in line)
                await reader.readexactly(size)
                await write(writer, reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
    client = HTTP1Client(keepalive=60.0)
    bodies = []
    try:
        for _ in range(requests):
            r = await client.open("POST", url, {}, b"{}", connect_timeout=5, read_timeout=10, total_timeout=30)
            try:
                parts = []
                while chunk := await r.next_chunk():
                    parts.append(chunk)
                bodies.append(b"".join(parts))
            finally:
                r.close()
    finally:
        client.close()
        server.close()
        await server.wait_closed()
    return bodies, connections


@pytest.mark.parametrize("write", [whole, bytewise], ids=["one-read", "bytewise"])
@pytest.mark.parametrize(
    "reply",
    [
        HEAD + b"\r\n" + chunked(EVENTS),
        b"HTTP/1.1 100 Continue\r\n\r\n" + HEAD + b"\r\n" + chunked(EVENTS),
        HEAD + b"content-encoding: gzip\r\n\r\n" + chunked([gzip.compress(STREAM)[:40], gzip.compress(STREAM)[40:]]),
    ],
    ids=["chunked", "interim-first", "gzip"],
)
def test_the_body_is_read_exactly_however_it_is_split(reply: bytes, write: Writer) -> None:
    bodies, connections = asyncio.run(serve(reply, write, requests=3))
    assert bodies == [STREAM] * 3
    assert connections == 1  # each reply was read to its end: the connection went back to the pool


@pytest.mark.parametrize("write", [whole, bytewise], ids=["one-read", "bytewise"])
def test_a_garbled_chunk_after_good_ones_is_an_error(write: Writer) -> None:
    reply = HEAD + b"\r\n" + chunked(EVENTS[:3])[: -len(b"0\r\n\r\n")] + b"zz\r\nnot a chunk\r\n"
    with pytest.raises(ProtocolViolation, match="malformed HTTP reply"):
        asyncio.run(serve(reply, write, requests=1))
