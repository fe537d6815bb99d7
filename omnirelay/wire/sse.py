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
        if not chunk:
            return []  # keeps a pending CR pending
        if self._pending_cr and chunk[0] == 0x0A:
            chunk = chunk[1:]  # the LF of a CRLF split across chunks
        self._pending_cr = chunk.endswith(b"\r")
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:  # CR and CRLF line ends become LF; a lone trailing CR ends its line, see _pending_cr
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = buf.rfind(b"\n") + 1
        if not end:
            self._buf = buf
            return []
        self._buf = buf[end:]
        # Complete lines only, decoded at once (LF never occurs inside a UTF-8 sequence). Each part but the
        # last of the split on "\n\n" is followed by a blank line; the last holds whole lines still pending.
        blocks = buf[:end].decode("utf-8", errors="replace").split("\n\n")
        tail = blocks.pop()
        out: list[SSEEvent] = []
        for block in blocks:
            # The common event, a single ``data`` line with nothing pending before it, without per-line work.
            if block.startswith("data:") and "\n" not in block and not self._data and self._event is None:
                out.append(SSEEvent(event=None, data=block[6:] if block.startswith(" ", 5) else block[5:]))
                continue
            for line in block.split("\n"):
                self._line(line, out)
            self._line("", out)
        if tail:
            for line in tail[:-1].split("\n"):
                self._line(line, out)
        return out

    def _line(self, line: str, out: list[SSEEvent]) -> None:
        if not line:
            if self._data or self._event is not None:
                out.append(SSEEvent(event=self._event, data="\n".join(self._data)))
            self._event = None
            self._data = []
            return
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
