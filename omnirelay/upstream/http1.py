"""A lean HTTP/1.1 client for upstream calls: keep-alive connection pools per origin, llhttp parsing (httptools),
and one timer per request.

Why not aiohttp here: on the hot path its client was about 40 % of the gateway's CPU per request (a request
object graph, a writer task, a stream reader, a timer per read and a multidict per reply). A gateway only ever
sends a prebuilt body with a handful of headers and reads one reply back, so this module does just that:
one ``asyncio.Protocol`` per connection, the reply parsed by llhttp's C parser straight into the request's
state, the body handed over as the bytes received. Everything else (redirects, cookies, proxies, multipart)
is out of scope on purpose; tools that need them (fetch, search) keep aiohttp.

Errors are the ``UpstreamHTTPError`` kinds below; the executor maps them to GatewayErrors.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from urllib.parse import urlsplit

import httptools

READ_HIGH_WATER = 1 << 20  # buffered reply bytes before the socket stops being read (back-pressure)
DEFAULT_MAX_BODY = 32 << 20  # decoded bytes ``Reply.read`` holds at most (a gzip bomb stops here)
MAX_HEADER_COUNT = 256
_URL_CACHE_MAX = 1024


class UpstreamHTTPError(Exception):
    """Base of the client's errors. Messages never contain request headers (they carry API keys)."""


class ConnectFailed(UpstreamHTTPError):
    """No connection could be opened (DNS, refused, unreachable, TLS handshake, connect timeout)."""


class UpstreamTimeout(UpstreamHTTPError):
    """The reply's total deadline passed, or the upstream stayed silent longer than the read timeout."""


class ConnectionClosed(UpstreamHTTPError):
    """The upstream closed or reset the connection before the reply was complete."""


class ProtocolViolation(UpstreamHTTPError):
    """The reply is not valid HTTP/1.x (or uses an encoding this client cannot decode)."""


class ReplyTooLarge(UpstreamHTTPError):
    """The reply body, decoded, is larger than the caller's limit for a body read whole."""


class InvalidRequestHeader(UpstreamHTTPError):
    """A header to send contains a line break (it would split the request); nothing was sent."""


class _Target:
    """A URL split once: its pool key and the request line's pieces. Providers build the same URL strings over
    and over, so targets are cached by string."""

    __slots__ = ("host", "host_header", "key", "port", "request_target", "tls")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ConnectFailed(f"unsupported upstream URL scheme or host: {scheme or '(none)'}://")
        self.tls = scheme == "https"
        self.host = parts.hostname
        default_port = 443 if self.tls else 80
        self.port = parts.port or default_port
        self.key = (scheme, self.host, self.port)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == default_port else f"{host}:{self.port}"
        path = parts.path or "/"
        self.request_target = f"{path}?{parts.query}" if parts.query else path


class Reply:
    """One request's reply as it arrives: status and headers once ``open`` returns, then the body through
    ``read`` (all of it, up to ``max_body`` decoded bytes) or ``next_chunk`` (whatever arrived since the last
    call). ``close`` must be called: it returns the connection to its pool when the reply was read to the end,
    and closes it otherwise.

    Memory stays bounded either way: a streamed body is buffered up to ``READ_HIGH_WATER`` before the socket
    stops being read, and a compressed body is inflated only as far as there is room for (the compressed
    rest waits in ``_tail``), so a small gzip bomb cannot expand in one call."""

    __slots__ = (
        "_body",
        "_buffered",
        "_collect",
        "_conn",
        "_deadline",
        "_decoded",
        "_decoder",
        "_ended",
        "_error",
        "_last_read",
        "_loop",
        "_max_body",
        "_raw_headers",
        "_read_timeout",
        "_received",
        "_tail",
        "_timer",
        "_waiter",
        "done",
        "headers",
        "status",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: _Connection,
        deadline: float,
        read_timeout: float,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self._loop = loop
        self._conn: _Connection | None = conn
        self._deadline = deadline
        self._read_timeout = read_timeout
        self._last_read = loop.time()
        self._timer: asyncio.TimerHandle | None = loop.call_at(
            min(deadline, self._last_read + read_timeout), self._tick
        )
        self._waiter: asyncio.Future[None] | None = None
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._buffered = 0
        self._received = False  # any reply byte seen (a stale pooled connection fails before that)
        self._error: UpstreamHTTPError | None = None
        self._decoder: zlib._Decompress | None = None
        self._tail = b""  # compressed bytes received and not inflated yet
        self._decoded = 0  # body bytes (after decoding) so far
        self._max_body = max_body
        self._collect = False  # read() is collecting the whole body: no back-pressure, the size limit instead
        self._ended = False  # the last body byte arrived (done once _tail is inflated too)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.done = False

    # -- called by the connection ----------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, error: UpstreamHTTPError) -> None:
        if self.done or self._error is not None:
            return
        self._error = error
        self._stop_timer()
        self._wake()

    def _headers_complete(self, status: int) -> None:
        self.status = status
        headers: dict[str, str] = {}
        for raw_name, raw_value in self._raw_headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            prior = headers.get(name)
            headers[name] = value if prior is None else f"{prior}, {value}"
        self._raw_headers = []
        self.headers = headers
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        elif encoding not in ("identity", ""):
            self._fail(ProtocolViolation(f"unsupported content-encoding {encoding!r}"))
            return
        self._wake()

    def _add_body(self, data: bytes) -> None:
        if self._decoder is None:
            self._append(data)
            return
        self._tail = self._tail + data if self._tail else data
        self._inflate()

    def _room(self) -> int:
        """How many decoded bytes may be buffered now: up to one past the limit when collecting (that byte
        proves the body too large), up to the high-water mark when a reader takes chunks."""
        if self._collect:
            return self._max_body + 1 - self._decoded
        return READ_HIGH_WATER - self._buffered

    def _inflate(self) -> None:
        decoder = self._decoder
        assert decoder is not None
        while self._tail and self._error is None:
            room = self._room()
            if room <= 0:  # the reader is behind: inflate the rest as it takes chunks
                if self._conn is not None:
                    self._conn.pause()
                return
            try:  # in steps of at most the high-water mark: zlib's output buffer grows to the step
                data = decoder.decompress(self._tail, min(room, READ_HIGH_WATER))
            except zlib.error:
                self._abort(ProtocolViolation("reply body does not decompress"))
                return
            self._tail = decoder.unconsumed_tail
            if data:
                self._append(data)
        if self._ended and not self._tail:
            self._finish()

    def _append(self, data: bytes) -> None:
        if not data or self._error is not None:
            return
        self._decoded += len(data)
        if self._collect and self._decoded > self._max_body:
            self._abort(ReplyTooLarge(f"reply body over {self._max_body} bytes"))
            return
        self._body.append(data)
        self._buffered += len(data)
        if self._buffered > READ_HIGH_WATER and not self._collect and self._conn is not None:
            self._conn.pause()
        if self._waiter is not None:
            self._wake()

    def _complete(self) -> None:
        self._ended = True
        if not self._tail:
            self._finish()

    def _finish(self) -> None:
        if self.done:
            return
        if self._decoder is not None:
            self._append(self._decoder.flush())
            if self._error is not None:
                return
        self.done = True
        self._stop_timer()
        self._wake()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        """The request's one timer: fires at the total deadline or when the read-silence window may be over;
        a read since it was armed just moves it on."""
        self._timer = None
        now = self._loop.time()
        conn = self._conn
        if conn is not None and conn.paused:
            self._last_read = now  # the socket is not read because the reader is behind, not a silent upstream
        if now >= self._deadline:
            self._abort(UpstreamTimeout("upstream reply exceeded the total timeout"))
            return
        silent_until = self._last_read + self._read_timeout
        if now >= silent_until:
            what = "reply headers" if self.status == 0 else "more of the reply"
            self._abort(UpstreamTimeout(f"no {what} within the read timeout"))
            return
        self._timer = self._loop.call_at(min(self._deadline, silent_until), self._tick)

    def _abort(self, error: UpstreamHTTPError) -> None:
        self._fail(error)
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.discard()

    # -- the caller's side -------------------------------------------------------------------------------------

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        except asyncio.CancelledError:
            self._waiter = None
            raise
        if self._error is not None:
            raise self._error

    async def _headers(self) -> None:
        while self.status == 0:
            await self._wait()

    async def read(self) -> bytes:
        """The whole body (decoded if the upstream compressed it). Raises ReplyTooLarge past ``max_body``."""
        self._collect = True
        if self._decoded > self._max_body:
            self._abort(ReplyTooLarge(f"reply body over {self._max_body} bytes"))
        elif self._tail:
            self._inflate()
        if self._conn is not None and not self._tail:
            self._conn.resume()  # back-pressure applied before the whole body was asked for
        while not self.done:
            await self._wait()
        body = self._body
        self._body = []
        self._buffered = 0
        if len(body) == 1:
            return body[0]
        return b"".join(body)

    async def next_chunk(self) -> bytes:
        """Every body byte that arrived since the last call, waiting for some; b"" once the body is over."""
        while not self._body:
            if self.done:
                return b""
            await self._wait()
        body = self._body
        self._body = []
        self._buffered = 0
        if self._tail:
            self._inflate()
        if self._conn is not None and not self._tail:
            self._conn.resume()
        return body[0] if len(body) == 1 else b"".join(body)

    def close(self) -> None:
        """Hand the connection back (reply read to the end, keep-alive allowed) or close it."""
        self._stop_timer()
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if self.done and self._error is None:
            conn.finish()
        else:
            conn.discard()


class _ParserCallbacks:
    """What llhttp calls while ``data_received`` feeds it: the connection's ``on_*`` methods, but for the body,
    whose pieces go straight into a list (a C call per HTTP chunk, where a streamed reply has a chunk per event,
    instead of two Python ones); the connection hands them to the reply at once, after each read."""

    __slots__ = ("on_body", "on_header", "on_headers_complete", "on_message_complete")

    def __init__(self, conn: _Connection) -> None:
        self.on_header = conn.on_header
        self.on_headers_complete = conn.on_headers_complete
        self.on_message_complete = conn.on_message_complete
        self.on_body = conn.pieces.append


class _Connection(asyncio.Protocol):
    """One keep-alive connection; llhttp calls the ``on_*`` methods while ``data_received`` feeds it."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.pieces: list[bytes] = []  # body bytes parsed from the current read, not yet the reply's
        self.parser = httptools.HttpResponseParser(_ParserCallbacks(self))
        self.reply: Reply | None = None
        self.closed = False
        self.keep_alive = True
        self.idle_since = 0.0
        self.reused = False
        self.paused = False
        self.header_count = 0

    # -- asyncio.Protocol -----------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reply = self.reply
        if reply is None or reply.done or reply._ended:
            # Bytes nothing asked for (on an idle connection, or after a complete reply): the connection's
            # framing can no longer be trusted, so it is not reused. A complete reply stays complete.
            self.discard()
            return
        reply._received = True
        reply._last_read = reply._loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._hand_body()
            reply._abort(ProtocolViolation("upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._hand_body()
            reply._abort(ProtocolViolation(f"malformed HTTP reply: {exc}"))
        else:
            if self.pieces:
                self._hand_body()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost settles the reply

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        reply = self.reply
        self.reply = None
        if reply is None or reply.done or reply._ended:
            return  # (an ended reply finishes as its reader inflates the rest)
        if reply.status and "content-length" not in reply.headers and not _chunked(reply.headers):
            reply._complete()  # a body delimited by the connection's end (HTTP/1.0 style)
            return
        if reply._received:
            reply._fail(ConnectionClosed("upstream closed the connection before the reply was complete"))
        else:
            reply._fail(_Stale("upstream closed the connection before replying"))

    # -- llhttp callbacks ---------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        reply = self.reply
        if reply is not None:
            self.header_count += 1
            if self.header_count > MAX_HEADER_COUNT:
                reply._abort(ProtocolViolation("too many reply headers"))
                return
            reply._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        reply = self.reply
        if reply is None:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim reply (100 Continue, 103 Early Hints): the real one follows
            reply._raw_headers = []
            return
        self.keep_alive = self.parser.should_keep_alive()
        reply._headers_complete(status)

    def _hand_body(self) -> None:
        """The body pieces parsed so far go to the reply, as one piece (its reader joins them anyway)."""
        pieces = self.pieces
        if not pieces:
            return
        body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()  # in place: the parser holds this list's append
        reply = self.reply
        if reply is not None and reply.status:
            reply._add_body(body)

    def on_message_complete(self) -> None:
        self._hand_body()  # before the reply is marked complete
        reply = self.reply
        if reply is None or not reply.status:
            self.header_count = 0
            return  # the end of an interim reply
        self.keep_alive = self.keep_alive and self.parser.should_keep_alive()
        reply._complete()

    # -- the pool's side ------------------------------------------------------------------------------------

    def send(self, reply: Reply, data: bytes) -> None:
        self.reply = reply
        self.header_count = 0
        transport = self.transport
        if transport is None or transport.is_closing():
            self.reply = None
            reply._fail(_Stale("pooled connection was closed"))
            return
        transport.write(data)

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def finish(self) -> None:
        """The reply was read to its end: back to the pool, unless either side asked to close."""
        self.reply = None
        self.resume()
        if self.keep_alive and not self.closed and self.transport is not None:
            self.reused = True
            self.pool.release(self)
        else:
            self.discard()

    def discard(self) -> None:
        self.reply = None
        self.closed = True
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class _Stale(ConnectionClosed):
    """A connection closed before any reply byte: on a reused connection the request is sent again once."""


def _chunked(headers: dict[str, str]) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


class _Pool:
    """Idle keep-alive connections to one origin, most recently used first (the warmest, and the least likely
    to have been closed by the upstream's idle timeout)."""

    __slots__ = ("idle", "keepalive", "target")

    def __init__(self, target: _Target, keepalive: float) -> None:
        self.target = target
        self.keepalive = keepalive
        self.idle: deque[_Connection] = deque()

    def take(self) -> _Connection | None:
        idle = self.idle
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and now - conn.idle_since < self.keepalive:
                return conn
            conn.discard()
        return None

    def release(self, conn: _Connection) -> None:
        now = conn.idle_since = time.monotonic()
        idle = self.idle
        # Sweep from the cold end: connections the upstream closed, or idle past keep-alive after a burst,
        # would otherwise sit under the warm ones until the pool next runs dry.
        while idle and (idle[0].closed or now - idle[0].idle_since >= self.keepalive):
            idle.popleft().discard()
        idle.append(conn)

    def close(self) -> None:
        while self.idle:
            self.idle.pop().discard()


class HTTP1Client:
    """Keep-alive HTTP/1.1 client over pooled connections; one per process (the executor owns it)."""

    def __init__(self, keepalive: float = 60.0) -> None:
        self.keepalive = keepalive
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._targets: dict[str, _Target] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            target = _Target(url)
            if len(self._targets) >= _URL_CACHE_MAX:
                self._targets.clear()
            self._targets[url] = target
        return target

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def _connect(self, pool: _Pool, connect_timeout: float) -> _Connection:
        target = pool.target
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                _transport, conn = await loop.create_connection(
                    lambda: _Connection(pool),
                    target.host,
                    target.port,
                    ssl=self._ssl_context() if target.tls else None,
                    server_hostname=target.host if target.tls else None,
                )
        except TimeoutError:
            raise ConnectFailed(f"connecting to {target.host}:{target.port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ConnectFailed(f"cannot connect to {target.host}:{target.port}: {reason}") from None
        return conn

    async def open(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        *,
        connect_timeout: float,
        read_timeout: float,
        total_timeout: float,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> Reply:
        """Send the request and return once the reply's status and headers are in. ``read_timeout`` bounds
        the wait for the headers and any silence after them; ``total_timeout`` the whole exchange, body
        included; ``max_body`` the decoded bytes ``Reply.read`` accepts. The caller must ``close()`` the
        reply."""
        if self._closed:
            raise ConnectFailed("the HTTP client is closed")
        target = self._target(url)
        pool = self._pools.get(target.key)
        if pool is None:
            pool = self._pools[target.key] = _Pool(target, self.keepalive)
        data = _serialize(method, target, headers, body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + total_timeout
        for _ in range(3):  # a stale pooled connection is retried (at most twice) on the next one
            conn = pool.take()
            if conn is None:
                conn = await self._connect(pool, min(connect_timeout, max(0.0, deadline - loop.time())))
            reply = Reply(loop, conn, deadline, read_timeout, max_body)
            conn.send(reply, data)
            try:
                await reply._headers()
            except _Stale:
                reply.close()
                if conn.reused:
                    continue
                raise ConnectionClosed("upstream closed the connection before replying") from None
            except BaseException:
                reply.close()
                raise
            return reply
        raise ConnectionClosed("upstream closed the connection before replying")

    def close(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


_FORBIDDEN = frozenset(("host", "content-length", "transfer-encoding", "connection"))


def _serialize(method: str, target: _Target, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {target.request_target} HTTP/1.1\r\nhost: {target.host_header}\r\n"]
    for name, value in headers.items():
        if name.lower() in _FORBIDDEN:
            continue  # framing is this client's business
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            # a header built from configuration or input must never split the request (no secret in the text)
            raise InvalidRequestHeader(f"header {name.strip()[:40]!r} contains a line break")
        lines.append(f"{name}: {value}\r\n")
    if body or method not in ("GET", "HEAD"):
        lines.append(f"content-length: {len(body)}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("latin-1", "replace")
    return head + body if body else head
