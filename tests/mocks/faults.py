"""A fault-injecting upstream speaking OpenAI Chat Completions, with many named channels on one port.

Each channel lives under its own path prefix (``base_url(name)`` = ``http://127.0.0.1:PORT/<name>/v1``) and
answers ``from <name>: echo <last user text>`` unless told to fail. Faults:

- ``429``: rate limited, with ``Retry-After`` (OpenAI's documented body and headers)
- ``500`` / ``503``: OpenAI's server-error / overloaded bodies
- ``hang_headers``: accept the request, never send headers
- ``hang_mid``: send headers and ``after_chunks`` content chunks (0: only the role chunk), then go silent
- ``reset_mid``: like hang_mid, then reset the TCP connection (RST)
- ``malformed``: 200 whose JSON body / SSE event data is not JSON (after ``after_chunks`` good chunks)
- ``truncated``: the body ends cleanly in the middle of a JSON body / SSE event
- ``slow``: wait ``delay_s`` before answering, then answer correctly

A fault applies to every request, or to the next ``times`` requests only, or (``every``) to every n-th one. The
embeddings and image generation paths take the same faults (and answer a chat completion when none applies).
The server runs in a background thread with its own loop, like tests.mocks.server.MockUpstreams.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
import threading
import time
from typing import Any, Literal

import msgspec
from aiohttp import web

from tests.mocks.script import split
from tests.mocks.server import last_user_text

Mode = Literal["ok", "429", "500", "503", "hang_headers", "hang_mid", "reset_mid", "malformed", "truncated", "slow"]

HANG_S = 30.0  # long enough that only the gateway's timeouts end it


class Fault(msgspec.Struct, kw_only=True):
    mode: Mode = "ok"
    times: int | None = None  # the next N requests only; None: all of them
    every: int | None = None  # only every n-th request (1-based count) of this channel fails
    retry_after: float = 1.0
    delay_s: float = 0.0
    after_chunks: int = 1
    status: int | None = None  # "ok" mode with a status: answer that status with OpenAI's error body


class FaultChannel:
    def __init__(self, name: str) -> None:
        self.name = name
        self.fault = Fault()
        self.hits = 0
        self.bodies: list[Any] = []


class FaultServer:
    def __init__(self) -> None:
        self.channels: dict[str, FaultChannel] = {}
        self.lock = threading.Lock()
        self.port = 0
        self.open_handlers = 0  # requests being answered right now
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    # -- control (from the test thread) ------------------------------------------------------------------

    def base_url(self, name: str) -> str:
        with self.lock:
            self.channels.setdefault(name, FaultChannel(name))
        return f"http://127.0.0.1:{self.port}/{name}/v1"

    def set(self, name: str, fault: Fault) -> None:
        with self.lock:
            self.channels.setdefault(name, FaultChannel(name)).fault = fault

    def hits(self, name: str) -> int:
        with self.lock:
            ch = self.channels.get(name)
            return ch.hits if ch else 0

    def last_body(self, name: str) -> Any:
        with self.lock:
            return self.channels[name].bodies[-1]

    def reset(self) -> None:
        with self.lock:
            for ch in self.channels.values():
                ch.fault = Fault()
                ch.hits = 0
                ch.bodies.clear()

    def start(self) -> FaultServer:
        ready = threading.Event()

        async def boot() -> None:
            app = web.Application()
            app.router.add_post("/{channel}/v1/chat/completions", self._handle)
            # The same faults on the other endpoints a gateway calls; only the failing modes mean anything there
            # (a fault-free answer is a chat completion, not an embedding or an image).
            app.router.add_post("/{channel}/v1/embeddings", self._handle)
            app.router.add_post("/{channel}/v1/images/generations", self._handle)
            # Cancel a hung handler when the gateway gives up on it, as a real server's request would end.
            self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert server is not None
            sockets = getattr(server, "sockets", None)
            assert sockets
            self.port = sockets[0].getsockname()[1]

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(boot())
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, name="fault-upstream", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("fault server did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)

    # -- serving -----------------------------------------------------------------------------------------

    def _take(self, name: str, body: Any) -> Fault:
        with self.lock:
            ch = self.channels.setdefault(name, FaultChannel(name))
            ch.hits += 1
            ch.bodies.append(body)
            fault = ch.fault
            if fault.every is not None:
                return fault if ch.hits % fault.every == 0 else Fault()
            if fault.times is not None:
                if fault.times <= 0:
                    return Fault()
                ch.fault = Fault(**{**msgspec.structs.asdict(fault), "times": fault.times - 1})
            return fault

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["channel"]
        body = await request.json()
        fault = self._take(name, body)
        self.open_handlers += 1
        try:
            return await self._answer(request, name, body, fault)
        finally:
            self.open_handlers -= 1

    async def _answer(self, request: web.Request, name: str, body: dict[str, Any], f: Fault) -> web.StreamResponse:
        model = str(body.get("model", ""))
        mode = f.mode
        if mode in ("429", "500", "503") or f.status is not None:
            status = f.status or int(mode)
            return _error(status, model, f.retry_after)
        if mode == "hang_headers":
            await asyncio.sleep(HANG_S)  # the fault itself: only the gateway's timeout ends it
        if mode == "slow":
            await asyncio.sleep(f.delay_s)  # the fault itself: an upstream slow to answer
        text = f"from {name}: echo {last_user_text(body.get('messages') or [])}"
        cid = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        if body.get("stream"):
            return await self._stream(request, f, cid, created, model, text, body)
        full = _completion(cid, created, model, text)
        if mode in ("malformed", "truncated", "hang_mid", "reset_mid"):
            cut = full[: len(full) // 2]
            if mode == "malformed":
                return web.Response(body=b"{" + cut[1:] + b"<html>oops", content_type="application/json")
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            if mode == "truncated":  # a clean end of a body that is half a JSON document
                return web.Response(body=cut, content_type="application/json")
            resp.content_length = len(full)
            await resp.prepare(request)
            await resp.write(cut)
            await _fail_mid(request, mode)
            return resp
        return web.Response(body=full, content_type="application/json")

    async def _stream(
        self, request: web.Request, f: Fault, cid: str, created: int, model: str, text: str, body: dict[str, Any]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        resp.headers["Cache-Control"] = "no-cache"
        await resp.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None, choices: bool = True) -> bytes:
            obj: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_faults",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else [],
            }
            if usage is not None or not choices:
                obj["usage"] = usage
            return b"data: " + msgspec.json.encode(obj) + b"\n\n"

        await resp.write(chunk({"role": "assistant", "content": "", "refusal": None}))
        pieces = split(text, 4)
        for i, piece in enumerate(pieces):
            if i == f.after_chunks and f.mode in ("hang_mid", "reset_mid", "malformed", "truncated"):
                if i:  # let the good chunks reach the gateway (and its client) on their own first
                    await asyncio.sleep(0.2)
                if f.mode == "malformed":
                    await resp.write(b"data: {this is not json}\n\n")
                    await resp.write_eof()
                    return resp
                if f.mode == "truncated":
                    await resp.write(chunk({"content": piece})[:40])  # half an event, then a clean end
                    await resp.write_eof()
                    return resp
                await _fail_mid(request, f.mode)
                return resp
            await resp.write(chunk({"content": piece}))
        await resp.write(chunk({}, finish="stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(chunk({}, usage=_usage(), choices=False))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


async def _fail_mid(request: web.Request, mode: str) -> None:
    if mode == "hang_mid":
        await asyncio.sleep(HANG_S)  # the fault itself: silent until the gateway gives up
        return
    await asyncio.sleep(0.2)  # let the gateway read what was sent before the reset discards it
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()  # with SO_LINGER 0: a TCP RST, not a FIN


def _usage() -> dict[str, Any]:
    return {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _completion(cid: str, created: int, model: str, text: str) -> bytes:
    return msgspec.json.encode(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_faults",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(),
            "service_tier": "default",
        }
    )


def _error(status: int, model: str, retry_after: float) -> web.Response:
    """OpenAI's documented error bodies for the statuses the faults use."""
    headers: dict[str, str] = {"x-request-id": "req_" + secrets.token_hex(8)}
    if status == 429:
        err = {
            "message": f"Rate limit reached for {model} on requests per min (RPM): Limit 3, Used 3, Requested 1.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
        headers.update(
            {
                "retry-after": str(int(retry_after)) if retry_after == int(retry_after) else str(retry_after),
                "x-ratelimit-limit-requests": "3",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": f"{retry_after}s",
            }
        )
    elif status == 503:
        err = {
            "message": "The engine is currently overloaded, please try again later.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    elif status >= 500:
        err = {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    else:
        err = {"message": f"mock client error {status}", "type": "invalid_request_error", "param": None, "code": None}
    return web.Response(
        status=status, body=msgspec.json.encode({"error": err}), content_type="application/json", headers=headers
    )
