"""The smallest Python relay worth comparing against: the floor any Python gateway reaches on this machine.

granian's RSGI interface, one pooled aiohttp client per worker, a static key compared in constant time, the
request body decoded and re-encoded once with msgspec (the least parsing a relay that routes on the model
does), and the upstream's reply passed back as it arrives. No translation, no state, no logging.

Run: ``PYRELAY_UPSTREAM=http://127.0.0.1:9000 PYRELAY_KEY=sk-... PYRELAY_UPSTREAM_KEY=sk-...
granian --interface rsgi --loop uvloop --no-log bench.pyrelay:app``.
"""

from __future__ import annotations

import asyncio
import hmac
import os

import aiohttp
import msgspec

# granian.rsgi re-exports these without declaring them public; the compiled module's stubs are the source.
from granian._granian import RSGIHTTPProtocol as HTTPProtocol
from granian._granian import RSGIHTTPStreamTransport as HTTPStreamTransport
from granian._granian import RSGIProtocolClosed as ProtocolClosed
from granian.rsgi import Scope

JSON = [("content-type", "application/json")]
# Read once at import: every request compares against the same bytes and sends the same upstream headers.
KEY = ("Bearer " + os.environ["PYRELAY_KEY"]).encode()
UPSTREAM_URL = os.environ["PYRELAY_UPSTREAM"].rstrip("/") + "/v1/chat/completions"
UPSTREAM_HEADERS = {"authorization": "Bearer " + os.environ["PYRELAY_UPSTREAM_KEY"], "content-type": "application/json"}


def _error(proto: HTTPProtocol, status: int, message: str) -> None:
    proto.response_bytes(status, JSON, msgspec.json.encode({"error": {"message": message}}))


class PyRelay:
    """``__rsgi__`` for granian; the client session lives on the worker's loop, created before serving."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        async def open_session() -> aiohttp.ClientSession:
            # limit=0: no cap on pooled upstream connections, so the pool never queues requests under load.
            return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        self.session = loop.run_until_complete(open_session())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.session is not None:
            loop.run_until_complete(self.session.close())

    async def __rsgi__(self, scope: Scope, proto: HTTPProtocol) -> None:
        if scope.proto != "http":
            return
        if scope.method == "GET" and scope.path == "/health":
            proto.response_bytes(200, JSON, b'{"status":"ok"}')
            return
        if scope.method != "POST" or scope.path != "/v1/chat/completions":
            _error(proto, 404, "not found")
            return
        if not hmac.compare_digest(scope.headers.get("authorization", "").encode(), KEY):
            _error(proto, 401, "invalid API key")
            return
        try:
            payload = msgspec.json.decode(await proto())
        except msgspec.DecodeError:
            _error(proto, 400, "body is not JSON")
            return
        stream = isinstance(payload, dict) and payload.get("stream") is True
        assert self.session is not None
        transport: HTTPStreamTransport | None = None
        try:
            async with self.session.post(
                UPSTREAM_URL, data=msgspec.json.encode(payload), headers=UPSTREAM_HEADERS
            ) as up:
                headers = [("content-type", up.headers.get("content-type", "application/json"))]
                if not stream:
                    proto.response_bytes(up.status, headers, await up.read())
                    return
                transport = proto.response_stream(up.status, headers)
                async for chunk in up.content.iter_any():
                    await transport.send_bytes(chunk)
        except aiohttp.ClientError as exc:
            if transport is None:  # once a stream's status line is out, all that is left is to stop
                _error(proto, 502, f"upstream: {type(exc).__name__}")
        except ProtocolClosed:
            pass  # the client went away mid-stream; leaving the block releases the upstream connection


app = PyRelay()
