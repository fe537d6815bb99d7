"""An OpenAI-compatible upstream written at the byte level, for what framework mocks cannot do: gzip over
chunked framing in odd pieces, bodies delimited by the connection's end, interim 1xx replies, a keep-alive
connection closed as the next request arrives, garbage instead of HTTP, and header-splitting checks.

The behaviour is chosen by the first path segment (``base_url(mode)`` = ``http://127.0.0.1:PORT/<mode>/v1``).
Runs in a background thread with its own loop; ``connections`` counts accepted TCP connections per mode and
``requests`` keeps each request's raw head. (The client pools connections per origin, so one connection may
serve requests for several modes: each counts it once.)
"""

from __future__ import annotations

import asyncio
import gzip
import threading
from collections import Counter

import msgspec

MODEL = "gpt-4o-mini"
TEXT = "raw upstream says hi"


def completion_body(text: str = TEXT) -> bytes:
    return msgspec.json.encode(
        {
            "id": "chatcmpl-raw1",
            "object": "chat.completion",
            "created": 1735689600,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
        }
    )


def sse_body(words: list[str]) -> bytes:
    """OpenAI's stream framing: role chunk, one content chunk per word, finish chunk, usage chunk, [DONE]."""

    def chunk(delta: dict[str, object], finish: str | None = None, usage: object = None) -> bytes:
        choices = [] if usage else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        event = {
            "id": "chatcmpl-raw2",
            "object": "chat.completion.chunk",
            "created": 1735689600,
            "model": MODEL,
            "choices": choices,
            "usage": usage,
        }
        return b"data: " + msgspec.json.encode(event) + b"\n\n"

    parts = [chunk({"role": "assistant", "content": ""})]
    parts += [chunk({"content": w}) for w in words]
    parts.append(chunk({}, finish="stop"))
    parts.append(chunk({}, usage={"prompt_tokens": 9, "completion_tokens": len(words), "total_tokens": 9 + len(words)}))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def _chunked(body: bytes, size: int) -> bytes:
    out = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return b"".join(out) + b"0\r\n\r\n"


class RawUpstream:
    def __init__(self) -> None:
        self.port = 0
        self.connections: Counter[str] = Counter()
        self.requests: list[bytes] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    def base_url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"

    def start(self) -> RawUpstream:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        seen: set[str] = set()
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(head)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length) if length else b""
                mode = head.split(b" ")[1].split(b"/")[1].decode()
                if mode not in seen:  # connections are per origin, so one may serve several modes
                    self.connections[mode] += 1
                    seen.add(mode)
                served += 1
                stream = b'"stream":true' in body
                if not await self._reply(mode, served, stream, writer):
                    return
        finally:
            writer.close()

    async def _reply(self, mode: str, served: int, stream: bool, writer: asyncio.StreamWriter) -> bool:
        """Write one reply; False closes the connection."""
        ctype = b"text/event-stream" if stream else b"application/json"
        body = sse_body(["raw ", "upstream ", "says ", "hi"]) if stream else completion_body()
        if mode == "drop-second" and served >= 2:
            return False  # the idle-timeout race: the request arrived just as the upstream closed
        if mode == "garbage":
            writer.write(b"HELLO THERE\r\n\r\n")
            return False
        if mode == "gzip-chunked":
            packed = gzip.compress(body)
            head = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-encoding: gzip\r\n" % ctype
            writer.write(head + b"transfer-encoding: chunked\r\n\r\n")
            framed = _chunked(packed, 7)
            for i in range(0, len(framed), 5):  # the framing itself arrives in odd pieces
                writer.write(framed[i : i + 5])
                await writer.drain()
            return True
        if mode == "until-close":  # no length, no chunking: the body ends with the connection
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\nconnection: close\r\n\r\n" % ctype)
            for i in range(0, len(body), 11):
                writer.write(body[i : i + 11])
                await writer.drain()
            return False
        if mode == "interim":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        if mode == "cut-chunked":  # the stream stops mid-chunk and the connection closes
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ntransfer-encoding: chunked\r\n\r\n" % ctype)
            framed = _chunked(body, 64)
            writer.write(framed[: len(framed) // 2])
            await writer.drain()
            return False
        head = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (ctype, len(body))
        if mode == "trailing-junk":  # bytes after a complete reply: the reply stands, the connection is dropped
            writer.write(head + b"\r\n" + body + b"JUNK")
            await writer.drain()
            return True
        if mode == "conn-close":
            writer.write(head + b"connection: close\r\n\r\n" + body)
            return False
        writer.write(head + b"\r\n" + body)
        await writer.drain()
        return True
