"""A deliberately trivial OpenAI chat-completions upstream for load tests.

Every response is prebuilt bytes: the server parses only the request line, ``content-length`` and
``connection``, and looks for ``"stream":true`` in the body. That keeps its own cost per request far below any
gateway's, so what a benchmark measures is the gateway. It speaks HTTP/1.1 with keep-alive (no pipelining
guarantees beyond in-order replies), answers any POST path with a chat completion, streams with chunked
transfer encoding in the real OpenAI SSE framing, and answers ``GET /v1/models`` and ``GET /health``.

Run: ``python -m bench.mock_upstream --port 9000 --chunks 50``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
from typing import cast

import uvloop

MODEL = "gpt-4o-mini"
CREATED = 1_735_689_600
COMPLETION_TEXT = "Hello! This is a short benchmark reply from the mock upstream."
PROMPT_TOKENS = 14
MAX_HEADER_BYTES = 64 * 1024

_STREAM_TRUE = re.compile(rb'"stream"\s*:\s*true')
_INCLUDE_USAGE = re.compile(rb'"include_usage"\s*:\s*true')


def _usage(completion_tokens: int) -> dict[str, object]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _http(status: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return f"HTTP/1.1 {status}\r\n{head}\r\n".encode() + body


def _json_response(payload: object, status: str = "200 OK") -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return _http(
        status,
        [("content-type", "application/json"), ("content-length", str(len(body))), ("x-request-id", "req_mock")],
        body,
    )


def completion_body() -> bytes:
    return _json_response(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": COMPLETION_TEXT, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(12),
            "service_tier": "default",
            "system_fingerprint": "fp_mock",
        }
    )


def _chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_mock",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def sse_events(chunks: int, include_usage: bool) -> list[bytes]:
    """The ``data:`` frames of one streamed completion with ``chunks`` content deltas."""
    payloads: list[object] = [_chunk({"role": "assistant", "content": "", "refusal": None})]
    payloads += [_chunk({"content": f"tok{i} "}) for i in range(chunks)]
    payloads.append(_chunk({}, finish="stop"))
    if include_usage:
        payloads.append(
            {
                "id": "chatcmpl-mock",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": MODEL,
                "service_tier": "default",
                "system_fingerprint": "fp_mock",
                "choices": [],
                "usage": _usage(chunks),
            }
        )
    frames = [b"data: " + json.dumps(p, separators=(",", ":")).encode() + b"\n\n" for p in payloads]
    frames.append(b"data: [DONE]\n\n")
    return frames


def stream_body(chunks: int, include_usage: bool) -> bytes:
    """The whole streamed response, one HTTP chunk per SSE event, written in one go: the gateway still sees
    ``chunks`` separate events, and the mock spends nothing on timers."""
    head = _http(
        "200 OK",
        [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("transfer-encoding", "chunked"),
            ("x-request-id", "req_mock"),
        ],
    )
    framed = b"".join(b"%x\r\n%s\r\n" % (len(f), f) for f in sse_events(chunks, include_usage))
    return head + framed + b"0\r\n\r\n"


MODELS_BODY = _json_response(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "system"}]}
)
HEALTH_BODY = _json_response({"status": "ok"})
NOT_FOUND = _json_response(
    {"error": {"message": "not found", "type": "invalid_request_error", "param": None, "code": "unknown_url"}},
    status="404 Not Found",
)
BAD_REQUEST = _http("400 Bad Request", [("content-length", "0"), ("connection", "close")])


class Responses:
    def __init__(self, chunks: int) -> None:
        self.completion = completion_body()
        self.stream_usage = stream_body(chunks, include_usage=True)
        self.stream_plain = stream_body(chunks, include_usage=False)


class MockProtocol(asyncio.Protocol):
    """One connection: accumulate bytes, answer every complete request in order."""

    def __init__(self, responses: Responses) -> None:
        self.responses = responses
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None and self._answer_one():
            pass

    def _answer_one(self) -> bool:
        """Answer the first complete request in the buffer; False when more bytes are needed."""
        assert self.transport is not None
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEADER_BYTES:
                self._close_with(BAD_REQUEST)
            return False
        head = bytes(self.buf[:end]).lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            try:
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            except ValueError:
                self._close_with(BAD_REQUEST)
                return False
        elif b"\r\ntransfer-encoding:" in head:
            self._close_with(BAD_REQUEST)  # chunked request bodies: no benchmark client sends them
            return False
        total = end + 4 + length
        if len(self.buf) < total:
            return False
        body = bytes(self.buf[end + 4 : total])
        del self.buf[:total]
        if head.startswith(b"post "):
            if _STREAM_TRUE.search(body):
                reply = self.responses.stream_usage if _INCLUDE_USAGE.search(body) else self.responses.stream_plain
            else:
                reply = self.responses.completion
        elif head.startswith(b"get ") and b"/models" in head[: head.find(b"\r\n")]:
            reply = MODELS_BODY
        elif head.startswith(b"get "):
            reply = HEALTH_BODY
        else:
            reply = NOT_FOUND
        self.transport.write(reply)
        if b"\r\nconnection: close" in head or head[: head.find(b"\r\n")].endswith(b"http/1.0"):
            self.transport.close()
            self.transport = None
            return False
        return True

    def _close_with(self, reply: bytes) -> None:
        assert self.transport is not None
        self.transport.write(reply)
        self.transport.close()
        self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(host: str, port: int, chunks: int) -> None:
    responses = Responses(chunks)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: MockProtocol(responses), host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="fast mock OpenAI upstream for benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=50, help="content deltas per streamed reply")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.chunks))


if __name__ == "__main__":
    main()
