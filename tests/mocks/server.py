"""Runs every family's mock upstream on its own port, in one background thread with its own event loop."""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections import deque
from typing import Any

import msgspec
from aiohttp import web

from tests.mocks.script import ScriptedReply


class RecordedRequest(msgspec.Struct, kw_only=True):
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class MockState:
    """Queue of scripted replies and log of received requests for one family."""

    def __init__(self) -> None:
        self.replies: deque[ScriptedReply] = deque()
        self.requests: list[RecordedRequest] = []
        self.lock = threading.Lock()
        self.batch_create_delay_s = 0.0  # the batch API's create answers this late (batch_api.py)
        self.batch_list_missing = False  # ... it has no GET /v1/batches

    def next_reply(self, default_text: str) -> ScriptedReply:
        with self.lock:
            if self.replies:
                reply = self.replies.popleft()
                return msgspec.structs.replace(reply, text=default_text) if reply.echo else reply
        return ScriptedReply(text=default_text)

    async def record(self, request: web.Request) -> Any:
        raw = await request.read()
        body: Any = msgspec.json.decode(raw) if raw else None
        with self.lock:
            self.requests.append(
                RecordedRequest(path=request.path, query=dict(request.query), headers=dict(request.headers), body=body)
            )
        return body


class MockUpstreams:
    """Start with ``start()``; ``url(family)`` gives the base URL to configure in omnirelay."""

    FAMILIES = ("openai", "anthropic", "gemini")

    def __init__(self) -> None:
        self.states = {f: MockState() for f in self.FAMILIES}
        self.ports: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []

    def _app(self, family: str) -> web.Application:
        module = importlib.import_module(f"tests.mocks.{family}_server")
        app: web.Application = module.make_app(self.states[family])
        return app

    def start(self) -> None:
        ready = threading.Event()

        async def boot() -> None:
            for family in self.FAMILIES:
                runner = web.AppRunner(self._app(family), access_log=None)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                server = site._server
                assert server is not None
                sockets = getattr(server, "sockets", None)
                assert sockets
                self.ports[family] = sockets[0].getsockname()[1]
                self._runners.append(runner)

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(boot())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="mock-upstreams", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("mock upstreams did not start")

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            for runner in self._runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)

    def url(self, family: str) -> str:
        """Base URL as each provider's SDK would configure it."""
        port = self.ports[family]
        if family == "openai":
            return f"http://127.0.0.1:{port}/v1"
        return f"http://127.0.0.1:{port}"

    def push(self, family: str, *replies: ScriptedReply) -> None:
        with self.states[family].lock:
            self.states[family].replies.extend(replies)

    def requests(self, family: str) -> list[RecordedRequest]:
        with self.states[family].lock:
            return list(self.states[family].requests)

    def last_request(self, family: str) -> RecordedRequest:
        reqs = self.requests(family)
        assert reqs, f"the {family} mock received no request"
        return reqs[-1]

    def reset(self) -> None:
        for state in self.states.values():
            with state.lock:
                state.replies.clear()
                state.requests.clear()
                state.batch_create_delay_s = 0.0
                state.batch_list_missing = False


def last_user_text(messages: list[Any]) -> str:
    """Best-effort: the text of the last user turn, for the echo default (family-agnostic shapes)."""
    for msg in reversed(messages or []):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", None):
            continue
        content = msg.get("content", msg.get("parts"))
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [c.get("text", "") for c in content if isinstance(c, dict) and "text" in c]
            if texts:
                return " ".join(texts)
    return ""
