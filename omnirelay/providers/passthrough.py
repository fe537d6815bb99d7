"""Same-format streams at the cost of relaying bytes: ``FrameRelay`` is a stream parser that hands the upstream's
SSE frames on as ``RawFrames`` instead of decoding and re-encoding each event, when the inbound protocol speaks the
upstream's own stream format. No I/O, like every parser.

It still reads what the gateway must know. Each read's complete frames are checked in one go by the provider's
``plain`` function (one C-level decode of the frames as a JSON array into a shape that admits only content the
canonical path would pass on unchanged: no usage, no error, no finish, no tool call, no reasoning), which also
returns the texts they carry. Frames that fail it (and only those) go through the provider's ordinary parser and
come out as canonical events, which the protocol's encoder renders as it always does. The encoder also decides
about the ``RawFrames``: it sends their bytes when they continue what it has sent (the choice it opened, the text
block it has open under the same index), else renders their texts.

- Until the stream's first content event every frame is parsed (canonical): routing may still retry on another
  channel then, and the encoder sees the stream's start as usual.
- Malformed frames are never forwarded: they fail ``plain``, and the parser reports them as it always does.
- Truncation is the parser's ``close()`` verdict: it saw every finish and terminator frame.
- Bytes after the terminator are dropped, as the parser drops them.
- Anything the frame scan does not handle (CR line ends, one event in many reads) switches the rest of the stream
  to the canonical parser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from omnirelay.core.errors import GatewayError
from omnirelay.core.events import (
    RawFrames,
    StreamEvent,
    StreamFailure,
    StreamStart,
    UsageReport,
)
from omnirelay.providers.base import StreamParser

# An unfinished frame is joined with each new read; past this size the rest of the stream goes to the parser, whose
# decoder joins the pieces of a long event once (and enforces the event size limit).
MAX_TAIL_BYTES = 64 << 10
_END = b"\n\n"


# Checks whole SSE frames (a run of them, ``b"...\\n\\n"``): if every one is plain, the texts they carry and the
# choice or content block they belong to (all the same one), else None.
Plain = Callable[[bytes], "tuple[list[str], int] | None"]


Found = tuple[list[str], int]


def plain_segments(data: bytes, pos: int, plain: Plain, hint: bytes) -> Iterator[tuple[int, int, Found | None]]:
    """``data[pos:]`` (whole frames) cut into ``(start, end, found)``: a run of plain frames with ``plain``'s
    result, or one frame that is not plain (``found`` None). The usual read is plain throughout (one check); the usual
    exception is the end of the stream in the same read, so the frames before the first ``hint`` (where the end
    starts, e.g. a finish reason) are tried as one run before the rest is checked frame by frame."""
    size = len(data)
    at = data.find(hint, pos)
    if at < 0:
        found = plain(data[pos:] if pos else data)
        if found is not None:
            yield pos, size, found
            return
    else:
        start = data.rfind(_END, pos, at) + 2
        if start > pos + 1:
            found = plain(data[pos:start])
            if found is not None:
                yield pos, start, found
                pos = start
    while pos < size:
        end = data.find(_END, pos) + 2
        if end == 1:
            end = size
        yield pos, end, plain(data[pos:end])
        pos = end


class FrameRelay(StreamParser):
    """``parser`` is the provider's parser for this stream (``parse_frame`` its way in for a frame known not to be
    plain, if it has a quicker one than ``feed``); ``plain(frames)`` the texts that whole frames carry if they may
    go out unchanged, else None (``plain_segments``); ``hint`` where a read's plain frames usually end;
    ``done`` whether ``parser`` has seen the terminator; ``accept`` may refuse pass-through on the stream's first
    event (the stream is then canonical throughout)."""

    __slots__ = (
        "_accept",
        "_canonical",
        "_done",
        "_failed",
        "_fast",
        "_hint",
        "_over",
        "_parse_frame",
        "_parser",
        "_plain",
        "_tail",
    )

    def __init__(
        self,
        parser: StreamParser,
        plain: Plain,
        hint: bytes,
        done: Callable[[], bool],
        accept: Callable[[StreamStart], bool] = lambda _start: True,
        parse_frame: Callable[[bytes], list[StreamEvent]] | None = None,
    ) -> None:
        self._parser = parser
        self._parse_frame = parse_frame or parser.feed
        self._plain = plain
        self._hint = hint
        self._done = done
        self._accept = accept
        self._tail = b""  # an unfinished frame
        self._fast = False  # past the first content event
        self._canonical = False  # every byte goes to the parser from here on
        self._over = False  # the terminator (or a failure) was read
        self._failed = False  # ... a failure, reported as a StreamFailure: nothing more to say at close

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        if self._canonical:
            return self._parser.feed(chunk)
        if self._over or not chunk:
            return []
        data = self._tail + chunk if self._tail else chunk
        if b"\r" in chunk:  # CR or CRLF line ends: the parser's decoder handles them (and a CRLF split in two)
            self._canonical = True
            self._tail = b""
            return self._parser.feed(data)
        end = data.rfind(_END) + 2
        if end == 1:
            if len(data) > MAX_TAIL_BYTES:  # a big event in many pieces: the decoder joins them without copies
                self._canonical = True
                self._tail = b""
                return self._parser.feed(data)
            self._tail = data
            return []
        if end < len(data):
            self._tail = data[end:]
            data = data[:end]
        else:
            self._tail = b""
        out: list[StreamEvent] = []
        if self._fast:
            self._relay(data, 0, out)
        else:
            self._head(data, out)
        return out

    def _head(self, data: bytes, out: list[StreamEvent]) -> None:
        """Frame by frame through the parser until the first content event; the rest of ``data`` is relayed."""
        pos = 0
        size = len(data)
        while pos < size:
            end = data.find(_END, pos) + 2
            if end == 1:
                end = size
            events = self._parser.feed(data[pos:end])
            out.extend(events)
            pos = end
            for event in events:
                if type(event) is StreamStart and not self._accept(event):
                    self._canonical = True
                elif not isinstance(event, StreamStart | UsageReport):
                    self._fast = True
            if self._canonical:
                if pos < size:
                    out.extend(self._parser.feed(data[pos:]))
                return
            if self._fast or self._done():
                break
        if self._done():
            self._over = True
        elif pos < size:
            self._relay(data, pos, out)

    def _relay(self, data: bytes, pos: int, out: list[StreamEvent]) -> None:
        """``data[pos:]`` (whole frames): runs of plain frames as RawFrames, the others parsed into canonical
        events."""
        run_start = run_end = pos
        texts: list[str] = []
        block = 0
        try:
            for start, end, found in plain_segments(data, pos, self._plain, self._hint):
                if found is not None:
                    if start != run_end or found[1] != block:
                        self._flush(data, run_start, run_end, texts, block, out)
                        run_start, texts, block = start, [], found[1]
                    run_end = end
                    texts.extend(found[0])
                    continue
                self._flush(data, run_start, run_end, texts, block, out)
                run_start = run_end = end
                texts = []
                out.extend(self._parse_frame(data[start:end]))
                if self._done():
                    self._over = True
                    return
        except GatewayError as err:  # what was forwarded before the error still goes out, then the error
            self._flush(data, run_start, run_end, texts, block, out)
            out.append(StreamFailure(error=err))
            self._over = self._failed = True
            return
        self._flush(data, run_start, run_end, texts, block, out)

    @staticmethod
    def _flush(data: bytes, start: int, end: int, texts: list[str], block: int, out: list[StreamEvent]) -> None:
        if end > start:
            whole = start == 0 and end == len(data)
            out.append(RawFrames(data=data if whole else data[start:end], texts=texts, block=block))

    def close(self) -> list[StreamEvent]:
        if self._failed:
            return []
        tail, self._tail = self._tail, b""
        out = self._parser.feed(tail) if tail.strip() and not self._over else []
        return out + self._parser.close()
