"""Server-sent events, as the WHATWG spec frames them: lines ending in LF, CRLF or CR; a blank line ends an
event; ``data`` lines concatenate with LF; lines starting with ``:`` are comments."""

from __future__ import annotations

import msgspec


class SSEEvent(msgspec.Struct, kw_only=True):
    event: str | None
    data: str


# The largest event (or unfinished line) accepted from an upstream. Big enough for an inline image or a long
# tool-call argument in one event; an upstream that never ends its line hits this instead of growing memory.
MAX_EVENT_BYTES = 8 << 20


class SSEEventTooLarge(ValueError):
    """An event, or a line not yet ended, is over the decoder's limit; the stream cannot be read on."""


class SSEDecoder:
    """Incremental decoder: feed arbitrary byte chunks, get completed events. Buffers at most
    ``max_event_bytes`` of an unfinished event (raising SSEEventTooLarge beyond), and copies each byte a bounded
    number of times however the line is cut (the bytes of an unfinished line are joined once, when it ends)."""

    __slots__ = ("_data", "_data_size", "_event", "_limit", "_parts", "_pending", "_pending_cr")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._parts: list[bytes] = []  # the unfinished last line, as received
        self._pending = 0  # its size
        self._event: str | None = None
        self._data: list[str] = []
        self._data_size = 0
        self._pending_cr = False
        self._limit = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []  # keeps a pending CR pending
        if self._pending_cr and chunk[0] == 0x0A:
            chunk = chunk[1:]  # the LF of a CRLF split across chunks
            if not chunk:
                self._pending_cr = False
                return []
        self._pending_cr = chunk.endswith(b"\r")
        if b"\r" in chunk:  # CR and CRLF line ends become LF; a lone trailing CR ends its line, see _pending_cr
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n") + 1
        if not end:
            self._pending += len(chunk)
            if self._pending + self._data_size > self._limit:
                raise SSEEventTooLarge(f"an upstream stream event is over {self._limit} bytes")
            self._parts.append(chunk)
            return []
        if self._parts:
            self._parts.append(chunk[:end])
            buf = b"".join(self._parts)
            self._parts = []
        else:
            buf = chunk[:end] if end < len(chunk) else chunk
        if end < len(chunk):
            self._parts.append(chunk[end:])
        self._pending = len(chunk) - end
        # Complete lines only, decoded at once (LF never occurs inside a UTF-8 sequence). Each part but the
        # last of the split on "\n\n" is followed by a blank line; the last holds whole lines still pending.
        blocks = buf.decode("utf-8", errors="replace").split("\n\n")
        tail = blocks.pop()
        out: list[SSEEvent] = []
        for block in blocks:
            # The common event, a single ``data`` line with nothing pending before it, without per-line work.
            if block.startswith("data:") and "\n" not in block and not self._data and self._event is None:
                if len(block) > self._limit:
                    raise SSEEventTooLarge(f"an upstream stream event is over {self._limit} bytes")
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
            self._data_size = 0
            return
        if line.startswith(":"):
            return
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._limit:
                raise SSEEventTooLarge(f"an upstream stream event is over {self._limit} bytes")
            self._data.append(value)
        elif field == "event":
            self._event = value

    @property
    def at_boundary(self) -> bool:
        """True when nothing of an unfinished event or line is buffered: the next byte starts a new event."""
        return not self._parts and not self._data and self._event is None and not self._pending_cr

    @property
    def has_partial(self) -> bool:
        """True when bytes or fields of an unfinished event are buffered (a truncated stream)."""
        return any(part.strip() for part in self._parts) or bool(self._data)


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """One SSE frame. ``data`` must be single-line JSON (msgspec output always is)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


_json = msgspec.json.Encoder()


def json_string_bodies(texts: list[str]) -> list[bytes]:
    """Each of ``texts`` JSON-encoded, without its enclosing quotes, exactly as encoding it alone would give: a
    stream encoder renders a run of text deltas with it (its frame template holds the quotes). One encode of the
    whole list, split at ``","``, when no quote in it is escaped (then every quote is an item's own, and the
    split is exact); otherwise one encode per text."""
    if not texts:
        return []
    encoded = _json.encode(texts)
    if b'\\"' in encoded:  # a quote (or a backslash before a closing quote) in some text
        return [_json.encode(text)[1:-1] for text in texts]
    return encoded[2:-2].split(b'","')
