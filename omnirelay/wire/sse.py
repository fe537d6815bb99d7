"""Server-sent events, as the WHATWG spec frames them: lines ending in LF, CRLF or CR; a blank line ends an
event; ``data`` lines concatenate with LF; lines starting with ``:`` are comments."""

from __future__ import annotations

import msgspec


class SSEEvent(msgspec.Struct, kw_only=True):
    event: str | None
    data: str


class SSEDecoder:
    """Incremental decoder: feed arbitrary byte chunks, get completed events."""

    __slots__ = ("_buf", "_data", "_event", "_pending_cr")

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split across chunks
        self._pending_cr = chunk.endswith(b"\r")
        buf = self._buf + chunk
        out: list[SSEEvent] = []
        start = 0
        n = len(buf)
        while start < n:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start)
            if lf == -1 and cr == -1:
                break
            if cr != -1 and (lf == -1 or cr < lf):
                end, nxt = cr, cr + 2 if cr + 1 < n and buf[cr + 1] == 0x0A else cr + 1
            else:
                end, nxt = lf, lf + 1
            self._line(buf[start:end], out)
            start = nxt
        self._buf = buf[start:]
        return out

    def _line(self, raw: bytes, out: list[SSEEvent]) -> None:
        if not raw:
            if self._data or self._event is not None:
                out.append(SSEEvent(event=self._event, data="\n".join(self._data)))
            self._event = None
            self._data = []
            return
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            return
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value

    @property
    def has_partial(self) -> bool:
        """True when bytes or fields of an unfinished event are buffered (a truncated stream)."""
        return bool(self._buf.strip()) or bool(self._data)


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """One SSE frame. ``data`` must be single-line JSON (msgspec output always is)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
