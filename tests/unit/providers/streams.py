"""Feeding a provider's stream parser: the same body cut at every byte offset, and byte by byte, must give the
events of the body fed whole (a parser may not depend on where the network cut the TCP segments)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from omnirelay.core.events import StreamEvent, StreamStart
from omnirelay.providers.base import StreamParser


def _comparable(event: StreamEvent) -> StreamEvent:
    # StreamStart.created is the clock when the upstream does not report it; it is not the parser's output.
    return msgspec.structs.replace(event, created=0) if isinstance(event, StreamStart) else event


def parse(parser: StreamParser, pieces: Iterable[bytes]) -> list[StreamEvent]:
    """Every event of the stream: each piece fed in turn, then close()."""
    out: list[StreamEvent] = []
    for piece in pieces:
        out.extend(parser.feed(piece))
    out.extend(parser.close())
    return [_comparable(e) for e in out]


def assert_split_invariant(make_parser: Callable[[], StreamParser], body: bytes) -> list[StreamEvent]:
    """The events of ``body``, checked to be the same however the body is cut; returns them."""
    whole = parse(make_parser(), [body])
    for offset in range(len(body) + 1):
        split = parse(make_parser(), [body[:offset], body[offset:]])
        assert split == whole, f"cut at byte {offset} of {len(body)}: {body[max(0, offset - 20) : offset + 20]!r}"
    assert parse(make_parser(), [body[i : i + 1] for i in range(len(body))]) == whole, "fed byte by byte"
    return whole
