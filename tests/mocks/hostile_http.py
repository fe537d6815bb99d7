"""A hostile upstream at the byte level, speaking each provider family's real wire format (OpenAI chat
completions, Anthropic Messages, Gemini generateContent), for what an honest mock never does: echo the API key
it was sent in error bodies and mid-stream error events (whole, JSON-escaped, cut short, as first/last
characters, in the type/code/param fields), send multi-megabyte bodies, a line that never ends, a gzip bomb,
JSON nested 100k levels deep, and absurd Retry-After values.

The behaviour is chosen by the first path segment, the family by the rest of the path as each provider builds
it (``base_url(mode, family)``). Runs in a background thread with its own loop; ``requests[(mode, family)]``
counts the requests received.
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections import Counter
from typing import Any

import msgspec

MODEL = "hostile-model"
BIG_TEXT_BYTES = 3 * 1024 * 1024
BOMB_BYTES = 256 * 1024 * 1024  # inflated size of the gzip bomb (about 250 KB on the wire)
ENDLESS_MAX_BYTES = 64 * 1024 * 1024  # the endless line stops here if nobody hangs up first
DEPTH = 100_000
GZIP_STREAM_EVENTS = 20_000  # a streamed gzip reply of this many 1 KB text events (about 24 MiB inflated)
GZIP_STREAM_PIECE = "a" * 1000

_json = msgspec.json.encode


def deep_array() -> bytes:
    return b"[" * DEPTH + b"]" * DEPTH


def big_text() -> str:
    line = "the quick brown fox jumps over the lazy dog 0123456789\n"
    return (line * (BIG_TEXT_BYTES // len(line) + 1))[:BIG_TEXT_BYTES]


def hostile_message(key: str) -> str:
    """A message carrying the key whole, cut to its first and last characters, and placed so the providers'
    message limits (300 characters for a mid-stream OpenAI error, 1000 for Anthropic) cut through a copy."""
    text = f"Incorrect API key provided: {key}. It starts {key[:12]} and ends {key[-10:]}. "
    text += "." * max(0, 290 - len(text)) + key + " "
    text += "." * max(0, 995 - len(text)) + key + " "
    return text + "@@ESCAPED@@"


def escape_all(key: str) -> bytes:
    """The key as JSON ``\\uXXXX`` escapes only: the same string once decoded, different bytes on the wire."""
    return "".join(f"\\u{ord(c):04x}" for c in key).encode()


def _with_escaped(body: bytes, key: str) -> bytes:
    return body.replace(b"@@ESCAPED@@", escape_all(key))


# -- per-family bodies --------------------------------------------------------------------------------------


def error_body(family: str, status: int, message: str, key: str) -> bytes:
    if family == "anthropic":
        etype = {401: "authentication_error", 429: "rate_limit_error"}.get(status, f"invalid_request_error {key}")
        return _json({"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_h1"})
    if family == "gemini":
        status_name = {401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED"}.get(status, f"INVALID_ARGUMENT_{key}")
        details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": key}]
        return _json({"error": {"code": status, "message": message, "status": status_name, "details": details}})
    code = "invalid_api_key" if status == 401 else key
    return _json({"error": {"message": message, "type": "invalid_request_error", "param": key, "code": code}})


def success_body(family: str, text: str, deep: bool = False) -> bytes:
    if family == "anthropic":
        content: list[Any] = [{"type": "text", "text": text}]
        if deep:
            content.append({"type": "tool_use", "id": "toolu_h1", "name": "f", "input": {"a": "@@DEEP@@"}})
        body: dict[str, Any] = {
            "id": "msg_h1",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": content,
            "stop_reason": "tool_use" if deep else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 9, "output_tokens": 5},
        }
    elif family == "gemini":
        parts: list[Any] = [{"text": text}]
        if deep:
            parts.append({"functionCall": {"name": "f", "args": {"a": "@@DEEP@@"}}})
        body = {
            "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5, "totalTokenCount": 14},
            "modelVersion": MODEL,
            "responseId": "resp_h1",
        }
    else:
        body = {
            "id": "chatcmpl-h1",
            "object": "chat.completion",
            "created": 1735689600,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": "@@DEEP@@" if deep else None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
        }
    return _json(body).replace(b'"@@DEEP@@"', deep_array())


def stream_head(family: str, text: str) -> bytes:
    """The start of a streamed reply, up to and including one piece of text."""
    if family == "anthropic":
        start: dict[str, Any] = {
            "type": "message_start",
            "message": {
                "id": "msg_h2",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 9, "output_tokens": 1},
            },
        }
        block: dict[str, Any] = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        delta: dict[str, Any] = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        }
        return b"".join(b"event: %s\ndata: %s\n\n" % (str(e["type"]).encode(), _json(e)) for e in (start, block, delta))
    if family == "gemini":
        chunk = {
            "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}],
            "modelVersion": MODEL,
            "responseId": "resp_h2",
        }
        return b"data: " + _json(chunk) + b"\r\n\r\n"
    chunks = [{"role": "assistant", "content": ""}, {"content": text}]
    return b"".join(
        b"data: "
        + _json(
            {
                "id": "chatcmpl-h2",
                "object": "chat.completion.chunk",
                "created": 1735689600,
                "model": MODEL,
                "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None}],
            }
        )
        + b"\n\n"
        for d in chunks
    )


def stream_end(family: str) -> bytes:
    """The rest of a streamed reply after ``stream_head``: the end of the choice, usage, the terminator."""
    if family == "anthropic":
        events: list[dict[str, Any]] = [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
            {"type": "message_stop"},
        ]
        return b"".join(b"event: %s\ndata: %s\n\n" % (str(e["type"]).encode(), _json(e)) for e in events)
    if family == "gemini":
        chunk = {
            "candidates": [
                {"content": {"parts": [{"text": "."}], "role": "model"}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5, "totalTokenCount": 14},
            "modelVersion": MODEL,
            "responseId": "resp_h2",
        }
        return b"data: " + _json(chunk) + b"\r\n\r\n"
    usage = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
    last: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]},
        {"choices": [], "usage": usage},
    ]
    base: dict[str, Any] = {
        "id": "chatcmpl-h2",
        "object": "chat.completion.chunk",
        "created": 1735689600,
        "model": MODEL,
    }
    return b"".join(b"data: " + _json(base | c) + b"\n\n" for c in last) + b"data: [DONE]\n\n"


def stream_error(family: str, message: str, key: str) -> bytes:
    if family == "anthropic":
        event = {"type": "error", "error": {"type": "api_error", "message": message}}
        return b"event: error\ndata: " + _json(event) + b"\n\n"
    if family == "gemini":
        return b"data: " + _json({"error": {"code": 500, "message": message, "status": "INTERNAL"}}) + b"\r\n\r\n"
    event = {"error": {"message": message, "type": "server_error", "param": None, "code": key}}
    return b"data: " + _json(event) + b"\n\n"


def _family(path: str) -> str:
    if path.endswith("/messages"):
        return "anthropic"
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return "gemini"
    return "openai"


def _key(headers: dict[str, str]) -> str:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:]
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or ""


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_BOMB: bytes | None = None


def gzip_bomb() -> bytes:
    global _BOMB
    if _BOMB is None:
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        block = b" " * (1 << 20)
        parts = [packer.compress(block) for _ in range(BOMB_BYTES >> 20)]
        _BOMB = b"".join(parts) + packer.flush()
    return _BOMB


class HostileUpstream:
    def __init__(self) -> None:
        self.port = 0
        self.requests: Counter[tuple[str, str]] = Counter()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def base_url(self, mode: str, family: str) -> str:
        root = f"http://127.0.0.1:{self.port}/{mode}"
        return root + "/v1" if family == "openai" else root

    def start(self) -> HostileUpstream:
        gzip_bomb()  # built once, before any request waits on it
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                mode = path.split("/")[1]
                family = _family(path.split("?")[0])
                self.requests[(mode, family)] += 1
                stream = b'"stream":true' in body or ":streamGenerateContent" in path
                if not await self._reply(mode, family, _key(headers), stream, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _reply(self, mode: str, family: str, key: str, stream: bool, writer: asyncio.StreamWriter) -> bool:
        """Write one reply; False closes the connection."""
        if mode in ("echo-401", "echo-400"):
            status = 401 if mode == "echo-401" else 400
            body = _with_escaped(error_body(family, status, hostile_message(key), key), key)
            return await self._send(writer, status, body)
        if mode == "echo-stream":
            tail = _with_escaped(stream_error(family, hostile_message(key), key), key)
            return await self._send_stream(writer, [stream_head(family, "partial "), tail], pause=0.2)
        if mode == "big":
            return await self._send(writer, 200, success_body(family, big_text()))
        if mode == "big-error":
            return await self._send(writer, 400, error_body(family, 400, big_text(), "k"))
        if mode == "deep":
            return await self._send(writer, 200, success_body(family, "deep", deep=True))
        if mode == "bomb":
            return await self._send(writer, 200, gzip_bomb(), extra=b"content-encoding: gzip\r\n")
        if mode == "gzip-stream":
            return await self._send_gzip_stream(writer, family)
        if mode == "endless":
            await self._endless(family, writer)
            return False
        if mode.startswith("retry-"):
            value = mode.removeprefix("retry-").encode()
            body = error_body(family, 429, "slow down", "k")
            return await self._send(writer, 429, body, extra=b"retry-after: %s\r\n" % value)
        if stream:
            return await self._send_stream(writer, [stream_head(family, "fine"), stream_end(family)])
        return await self._send(writer, 200, success_body(family, "fine"))

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: bytes, extra: bytes = b"") -> bool:
        head = b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (status, len(body))
        writer.write(head + extra + b"\r\n")
        for i in range(0, len(body), 1 << 16):
            writer.write(body[i : i + (1 << 16)])
            await writer.drain()
        return True

    async def _send_stream(self, writer: asyncio.StreamWriter, parts: list[bytes], pause: float = 0.0) -> bool:
        """A chunked event stream; ``pause`` between parts, as a model would take between tokens."""
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for i, part in enumerate(parts):
            if i and pause:
                await asyncio.sleep(pause)
            writer.write(_chunk(part))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _send_gzip_stream(self, writer: asyncio.StreamWriter, family: str) -> bool:
        """A long stream, gzip-compressed: tens of megabytes inflated from a few dozen kilobytes sent at once."""
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        event = stream_head(family, GZIP_STREAM_PIECE)
        if family == "anthropic":
            event = event[event.index(b"event: content_block_delta") :]
        elif family == "openai":
            event = event[event.index(b"data: ", 1) :]
        head = stream_head(family, "")
        body = packer.compress(head) + packer.compress(event * GZIP_STREAM_EVENTS)
        body += packer.compress(stream_end(family)) + packer.flush()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        return True

    async def _endless(self, family: str, writer: asyncio.StreamWriter) -> None:
        """A valid first event, then one ``data:`` line that never ends (until the client hangs up)."""
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(_chunk(stream_head(family, "start ") + b'data: {"x": "'))
        piece = _chunk(b"x" * (1 << 16))
        sent = 0
        while sent < ENDLESS_MAX_BYTES:
            writer.write(piece)
            await writer.drain()
            sent += 1 << 16
        writer.write(b"0\r\n\r\n")
        await writer.drain()
