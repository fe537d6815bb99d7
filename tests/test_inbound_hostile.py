"""Hostile clients on the inbound side, over raw sockets and httpx, on both server interfaces (RSGI and ASGI):
bodies that never arrive or trickle in, connections that stay silent, JSON nested 100,000 levels deep or with
invalid UTF-8 where nothing looks, clients that leave mid-body or while the upstream is still answering.
Each must get a well-formed 4xx in the caller's format (or a closed connection), within the configured time,
and leave the gateway healthy, its log free of tracebacks, and the usage record right.

Timeouts in this gateway: body 3 s in all, 1.5 s without data; headers (and keep-alive idleness) 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from omnirelay.config import ConfigError, parse_config
from omnirelay.core.errors import GatewayError
from omnirelay.core.types import ChatRequest, Message, TextPart, Tool
from omnirelay.protocols.base import MAX_NESTING, check_nesting
from omnirelay.web.exchange import BodyClock, BodyTimeouts, Exchange
from tests.gateway import Gateway
from tests.mocks.faults import Fault, FaultServer
from tests.routing_support import ADMIN_KEY, admin_get, base_config, channel, task_count, tcp_sockets

BODY_TIMEOUT = 3.0
BODY_IDLE = 1.5
HEADER_TIMEOUT = 2.0
SLACK = 2.0  # scheduling on a busy 2-core machine
UPSTREAM_DELAY = 8.0

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


@pytest.fixture(scope="module", params=["rsgi", "asgi"])
def gw(
    request: pytest.FixtureRequest, faults: FaultServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    slow = {"connect": 1.0, "first_byte": 30.0, "total": 30.0}
    models = {
        "plain": {"channels": [channel("ok")]},
        "slowpoke": {"channels": [channel("slow", timeouts=slow)]},
    }
    cfg = base_config(faults, ["ok", "slow"], models)
    cfg["server"].update(
        {"body_timeout": BODY_TIMEOUT, "body_idle_timeout": BODY_IDLE, "header_timeout": HEADER_TIMEOUT}
    )
    g = Gateway(cfg, tmp_path_factory.mktemp(f"hostile-{request.param}"), env={"OMNIRELAY_INTERFACE": request.param})
    g.start()
    yield g
    g.stop()


# -- raw HTTP ------------------------------------------------------------------------------------------


def _connect(gw: Gateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=10)


def _head(path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
        f"Content-Type: application/json\r\nanthropic-version: 2023-06-01\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, closed: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.closed = closed  # the server closed the connection after the response

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def _read_response(sock: socket.socket, timeout: float) -> RawResponse | None:
    """The response on ``sock`` (and whether the server then closed the connection), or None if the server
    closed it without one. Fails if nothing happens within ``timeout``."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no response and no close within {timeout} s (got {data[:200]!r})"
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            continue
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            headers = _parse_headers(head)
            if len(rest) >= int(headers.get("content-length", "0")):
                # Wait briefly for the close that should follow (bounded by the caller's deadline).
                return _finish(sock, head, rest, headers, deadline)
    if not data:
        return None
    head, _, rest = data.partition(b"\r\n\r\n")
    return RawResponse(int(head.split()[1]), _parse_headers(head), rest, closed=True)


def _parse_headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}


def _finish(sock: socket.socket, head: bytes, body: bytes, headers: dict[str, str], deadline: float) -> RawResponse:
    closed = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            if not sock.recv(65536):
                closed = True
                break
        except ConnectionResetError:
            closed = True
            break
    return RawResponse(int(head.split()[1]), headers, body, closed)


def _assert_error_shape(path: str, resp: RawResponse, status: int) -> str:
    assert resp.status == status, resp.body
    body = resp.json()
    if path == ANTHROPIC_PATH:
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
        message: str = body["error"]["message"]
    else:
        assert body["error"]["type"] == "invalid_request_error"
        message = body["error"]["message"]
    return message


def _wait_healthy(gw: Gateway) -> None:
    assert httpx.get(gw.url + "/health", timeout=5).status_code == 200


def _log_size(gw: Gateway) -> int:
    return gw.log_path.stat().st_size


def _log_is_clean(gw: Gateway, since: int) -> None:
    """No error and no traceback in what the gateway logged since offset ``since`` (this test's part)."""
    with gw.log_path.open("rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    assert "ERROR" not in text and "Traceback" not in text, text[-3000:]


# -- slow and missing bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [OPENAI_PATH, ANTHROPIC_PATH])
def test_body_promised_and_never_sent_gets_408_and_a_closed_connection(gw: Gateway, path: str) -> None:
    with _connect(gw) as sock:
        started = time.monotonic()
        sock.sendall(_head(path, 500) + b'{"model": "plain", ')
        resp = _read_response(sock, BODY_IDLE + SLACK + 2)
        elapsed = time.monotonic() - started
    assert resp is not None, "closed without a response"
    message = _assert_error_shape(path, resp, 408)
    assert "no request body data arrived for 1.5 s" in message
    assert BODY_IDLE - 0.2 <= elapsed <= BODY_IDLE + SLACK
    assert resp.closed, "the connection must not carry another request"
    _wait_healthy(gw)


@pytest.mark.parametrize("path", [OPENAI_PATH, ANTHROPIC_PATH])
def test_body_trickling_in_is_cut_at_the_total_deadline(gw: Gateway, path: str) -> None:
    """One byte every 0.5 s never trips the idle timeout; the total deadline must still end it."""
    with _connect(gw) as sock:
        started = time.monotonic()
        sock.sendall(_head(path, 1000))
        resp: RawResponse | None = None
        while time.monotonic() - started < BODY_TIMEOUT + SLACK + 2:
            with contextlib.suppress(OSError):  # closed by the server: read what it said
                sock.sendall(b" ")
            ready, _, _ = select.select([sock], [], [], 0.5)  # also the trickle's pace
            if ready:
                resp = _read_response(sock, SLACK)
                break
        elapsed = time.monotonic() - started
    assert resp is not None, "the trickle was never cut"
    message = _assert_error_shape(path, resp, 408)
    assert "not received within 3 s" in message
    assert BODY_TIMEOUT - 0.2 <= elapsed <= BODY_TIMEOUT + SLACK
    _wait_healthy(gw)


def _established(gw: Gateway) -> int:
    """Client connections the gateway holds open (its listening port's established sockets)."""
    assert gw.proc is not None
    return tcp_sockets(gw.proc.pid, local_port=gw.port)["ESTABLISHED"]


def test_silent_connections_are_closed_by_the_server(gw: Gateway) -> None:
    """200 connections that never send a byte, and one idle keep-alive connection after a request: the
    gateway closes them all within its header timeout (counted on the gateway's own sockets)."""
    baseline = _established(gw)
    keep_alive = _connect(gw)
    body = b'{"model": "plain", "messages": [{"role": "user", "content": "hi"}]}'
    keep_alive.sendall(_head(OPENAI_PATH, len(body)) + body)
    first = _read_response_keep_alive(keep_alive)
    assert first.status == 200
    silent = [_connect(gw) for _ in range(200)]
    opened = time.monotonic()
    try:
        deadline = opened + 5
        while _established(gw) < baseline + 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _established(gw) >= baseline + 150, "the gateway did not accept the connections"
        deadline = opened + HEADER_TIMEOUT + SLACK + 2
        while _established(gw) > baseline and time.monotonic() < deadline:
            time.sleep(0.1)
        elapsed = time.monotonic() - opened
        assert _established(gw) <= baseline, f"{_established(gw) - baseline} connections still open"
        assert elapsed >= HEADER_TIMEOUT - 0.5  # closed by the timeout, not by accident
        for sock in [*silent[:20], keep_alive]:  # and the clients see the close
            assert _read_response(sock, 2) is None
    finally:
        for sock in [*silent, keep_alive]:
            sock.close()
    _wait_healthy(gw)


def test_headers_trickling_in_are_cut_at_the_header_timeout(gw: Gateway) -> None:
    """A slowloris client: one header byte every 0.3 s. The connection is closed at the header timeout."""
    with _connect(gw) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        while time.monotonic() - started < HEADER_TIMEOUT + SLACK + 2:
            try:
                sock.sendall(b"x")
            except OSError:
                closed = True
                break
            ready, _, _ = select.select([sock], [], [], 0.3)  # also the trickle's pace
            if ready:
                resp = _read_response(sock, SLACK)
                closed = resp is None or resp.status == 408
                break
        elapsed = time.monotonic() - started
    assert closed, "the header trickle was never cut"
    assert HEADER_TIMEOUT - 0.3 <= elapsed <= HEADER_TIMEOUT + SLACK
    _wait_healthy(gw)


def _read_response_keep_alive(sock: socket.socket) -> RawResponse:
    data = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, "closed before the response"
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            headers = _parse_headers(head)
            if len(rest) >= int(headers.get("content-length", "0")):
                return RawResponse(int(head.split()[1]), headers, rest, closed=False)


# -- deep nesting and invalid UTF-8 ----------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b'{"a": ' * depth + b"1" + b"}" * depth


def _messages_body(path: str, extra: bytes) -> bytes:
    if path == ANTHROPIC_PATH:
        base = b'{"model": "plain", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]'
    else:
        base = b'{"model": "plain", "messages": [{"role": "user", "content": "hi"}]'
    return base + b", " + extra + b"}"


def _deep_fields(path: str, deep: bytes) -> dict[str, bytes]:
    if path == ANTHROPIC_PATH:
        tool = b'"tools": [{"name": "t", "input_schema": {"type": "object", "properties": ' + deep + b"}}]"
        part = (
            b'"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": '
            b'"tool_use", "id": "tu_1", "name": "t", "input": ' + deep + b"}]}]"
        )
    else:
        tool = b'"tools": [{"type": "function", "function": {"name": "t", "parameters": ' + deep + b"}}]"
        part = b'"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "x": ' + deep + b"}]}]"
    if path == ANTHROPIC_PATH:  # a modelled object: the deep part is an unknown field inside it
        free_form = b'"metadata": {"user_id": "u", "x": ' + deep + b"}"
    else:  # a modelled free-form object
        free_form = b'"web_search_options": {"x": ' + deep + b"}"
    return {
        "free-form field": free_form,
        "tool parameters": tool,
        "unknown field": b'"x_custom": ' + deep,
        "content part": part,
    }


def _post(gw: Gateway, path: str, body: bytes) -> httpx.Response:
    headers = {
        "authorization": f"Bearer {ADMIN_KEY}",
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
    }
    return httpx.post(gw.url + path, content=body, headers=headers, timeout=30)


def _assert_400(path: str, resp: httpx.Response) -> str:
    assert resp.status_code == 400, resp.text[:500]
    body = resp.json()
    if path == ANTHROPIC_PATH:
        assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    message: str = body["error"]["message"]
    return message


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("path", [OPENAI_PATH, ANTHROPIC_PATH])
def test_deep_nesting_anywhere_is_400(gw: Gateway, path: str, depth: int) -> None:
    log_from = _log_size(gw)
    for where, field in _deep_fields(path, _nested(depth)).items():
        body = _messages_body(path, field)
        if field.startswith(b'"messages"'):  # replaces the default messages
            body = body.replace(b'"messages": [{"role": "user", "content": "hi"}], ', b"", 1)
        message = _assert_400(path, _post(gw, path, body))
        assert "nest" in message, (where, message)
    _log_is_clean(gw, log_from)


@pytest.mark.parametrize("path", [OPENAI_PATH, ANTHROPIC_PATH])
def test_moderate_nesting_and_brackets_in_text_still_work(gw: Gateway, path: str) -> None:
    """No false alarms: 40 levels in an unknown field, and 10,000 unbalanced brackets inside a string."""
    resp = _post(gw, path, _messages_body(path, b'"x_custom": ' + _nested(40)))
    assert resp.status_code == 200, resp.text
    text = b"[{" * 10_000
    if path == ANTHROPIC_PATH:
        body = b'{"model": "plain", "max_tokens": 20, "messages": [{"role": "user", "content": "' + text + b'"}]}'
    else:
        body = b'{"model": "plain", "messages": [{"role": "user", "content": "' + text + b'"}]}'
    resp = _post(gw, path, body)
    assert resp.status_code == 200, resp.text[:500]


@pytest.mark.parametrize("path", [OPENAI_PATH, ANTHROPIC_PATH])
def test_invalid_utf8_in_an_unknown_field_is_400(gw: Gateway, path: str) -> None:
    log_from = _log_size(gw)
    for extra in (b'"x_custom": "caf\xc3\x28 \xff\xfe"', b'"x_custom": {"k": ["\xed\xa0\x80"]}'):
        message = _assert_400(path, _post(gw, path, _messages_body(path, extra)))
        assert "utf-8" in message.lower(), message
    _log_is_clean(gw, log_from)


def test_admin_api_refuses_deep_nesting_with_400(gw: Gateway) -> None:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    resp = httpx.post(gw.url + "/admin/keys", content=b'{"name": "k", "x": ' + _nested(5_000) + b"}", headers=headers)
    assert resp.status_code == 400, resp.text[:300]
    assert "nest" in resp.json()["error"]["message"]


# -- clients that leave --------------------------------------------------------------------------------


def _wait_tasks(gw: Gateway, at_most: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = task_count(gw)
        if count is not None and count <= at_most:
            return
        time.sleep(0.05)
    raise AssertionError(f"requests still running: {task_count(gw)} tasks, expected at most {at_most}")


@pytest.mark.parametrize("path", [OPENAI_PATH, ANTHROPIC_PATH])
def test_client_dropping_mid_body_leaves_no_traceback(gw: Gateway, path: str) -> None:
    log_from = _log_size(gw)
    before = task_count(gw)
    assert before is not None
    for _ in range(5):
        with _connect(gw) as sock:
            sock.sendall(_head(path, 5000) + b'{"model": "plain", "messages": [')
    # The gateway has handled every drop once its request tasks are gone (well before the body timeout).
    _wait_tasks(gw, before, BODY_IDLE - 0.3)
    _wait_healthy(gw)
    _log_is_clean(gw, log_from)


def _slowpoke_rows(gw: Gateway) -> list[dict[str, Any]]:
    resp = admin_get(gw, "/admin/usage?model=slowpoke")
    resp.raise_for_status()
    rows: list[dict[str, Any]] = resp.json()["data"]
    return [r for r in rows if r.get("model_requested") == "slowpoke"]


@pytest.mark.parametrize("path", [OPENAI_PATH, ANTHROPIC_PATH])
def test_non_streaming_client_leaving_is_recorded_499_and_stops_the_upstream(
    gw: Gateway, faults: FaultServer, path: str
) -> None:
    log_from = _log_size(gw)
    faults.set("slow", Fault(mode="slow", delay_s=UPSTREAM_DELAY))
    seen = len(_slowpoke_rows(gw))
    body = _messages_body(path, b'"stream": false').replace(b'"plain"', b'"slowpoke"')
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        _post_with_timeout(gw, path, body, 1.0)
    rows: list[dict[str, Any]] = []
    while time.monotonic() - started < UPSTREAM_DELAY - 2:
        rows = _slowpoke_rows(gw)
        if len(rows) > seen:
            break
        time.sleep(0.1)
    recorded_after = time.monotonic() - started
    try:
        assert len(rows) == seen + 1, f"no usage record within {recorded_after:.1f} s"
        row = max(rows, key=lambda r: r["created_at"])
        assert row["status"] == 499
        assert row["error"] == "client closed the connection"
        assert recorded_after < UPSTREAM_DELAY / 2
        # The upstream call was dropped with the client (the fault server's handler was cancelled).
        deadline = time.monotonic() + 2
        while faults.open_handlers and time.monotonic() < deadline:
            time.sleep(0.05)
        assert faults.open_handlers == 0
    finally:
        faults.reset()
    _log_is_clean(gw, log_from)


def _post_with_timeout(gw: Gateway, path: str, body: bytes, timeout: float) -> httpx.Response:
    headers = {
        "authorization": f"Bearer {ADMIN_KEY}",
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
    }
    with httpx.Client(timeout=timeout) as client:
        return client.post(gw.url + path, content=body, headers=headers)


# -- pure parts ----------------------------------------------------------------------------------------


class _TrickleExchange(Exchange):
    """A body that arrives in ``pieces`` pieces, ``gap`` seconds apart."""

    def __init__(self, pieces: int, gap: float, timeouts: BodyTimeouts) -> None:
        super().__init__("POST", "/v1/chat/completions", "", {}, timeouts)
        self.pieces = pieces
        self.gap = gap

    async def _read_body(self, limit: int, clock: BodyClock) -> bytes:
        out = b""
        for _ in range(self.pieces):
            await asyncio.sleep(self.gap)
            out += b"x"
            clock.tick()
        return out

    async def respond(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        raise NotImplementedError

    async def open_stream(self, headers: dict[str, str]) -> None:
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    async def close_stream(self) -> None:
        raise NotImplementedError

    async def disconnected(self) -> None:
        raise NotImplementedError


def _read(pieces: int, gap: float, total: float, idle: float) -> bytes | GatewayError:
    async def run() -> bytes | GatewayError:
        try:
            return await _TrickleExchange(pieces, gap, BodyTimeouts(total, idle)).body(100)
        except GatewayError as err:
            return err

    return asyncio.run(run())


def test_body_clock_cuts_idleness_and_the_total_but_not_a_steady_body() -> None:
    assert _read(pieces=6, gap=0.05, total=1.0, idle=0.2) == b"xxxxxx"  # 0.3 s, never 0.2 s silent
    idle = _read(pieces=3, gap=0.4, total=5.0, idle=0.2)
    assert isinstance(idle, GatewayError) and idle.status == 408
    assert idle.message == "no request body data arrived for 0.2 s"
    assert idle.headers["connection"] == "close"
    total = _read(pieces=20, gap=0.1, total=0.5, idle=0.3)
    assert isinstance(total, GatewayError) and total.status == 408
    assert total.message == "the request body was not received within 0.5 s"


def test_body_clock_leaves_other_cancellations_alone() -> None:
    async def run() -> None:
        task = asyncio.create_task(_TrickleExchange(1, 5.0, BodyTimeouts(10.0, 10.0)).body(100))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())


def _request_with(**fields: Any) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message(role="user", content=[TextPart(text="hi")])], **fields)


def _deep_dict(depth: int) -> dict[str, Any]:
    """Objects nested ``depth`` levels ({} is one level)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_nesting_check_names_the_field_and_allows_the_limit() -> None:
    check_nesting(_request_with(extra={"x": _deep_dict(MAX_NESTING)}, tools=[Tool(name="t", parameters={})]))
    with pytest.raises(GatewayError) as caught:
        check_nesting(_request_with(tools=[Tool(name="t"), Tool(name="u", parameters=_deep_dict(MAX_NESTING + 1))]))
    assert caught.value.param == "tools[1].parameters"
    assert caught.value.status == 400
    with pytest.raises(GatewayError) as caught:
        check_nesting(_request_with(extra={"x_custom": [[[[[[1]]]]]] * 3 + [_deep_dict(5000)]}))
    assert caught.value.param == "x_custom"


def test_config_refuses_non_positive_timeouts() -> None:
    for name in ("body_timeout", "body_idle_timeout", "header_timeout"):
        with pytest.raises(ConfigError, match=f"server.{name}"):
            parse_config({"server": {name: 0}})
