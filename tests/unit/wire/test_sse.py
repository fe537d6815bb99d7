"""The SSE decoder against the WHATWG framing rules, fed every cut of the stream: LF, CRLF and CR line ends
(a CRLF split between chunks is one line end), comments, multi-line data, ``event`` fields, a field without a
space after the colon, multi-byte UTF-8 cut mid-character; and its bound on an event that never ends."""

from __future__ import annotations

import random

import msgspec
import pytest

from omnirelay.wire.sse import SSEDecoder, SSEEvent, SSEEventTooLarge, encode_event, json_string_bodies

STREAM = (
    b": a comment, ignored\n"
    b"data: first\n\n"
    b'event: message_start\ndata: {"a": 1}\n\n'
    b"data: line one\ndata: line two\ndata:\n\n"  # multi-line data joins with LF, an empty data line included
    b"data:no-space\n"
    b": a comment inside an event\n"
    b"id: 7\nretry: 100\nunknown: field\n\n"  # fields the decoder does not model are skipped
    b"event: only-an-event\n\n"
    b"data: Gr\xc3\xbc\xc3\x9f dich \xf0\x9f\x91\x8b\n\n"
    b"\n\n"  # blank lines between events dispatch nothing
    b"data:  two spaces keep one\n\n"
)
EXPECTED = [
    SSEEvent(event=None, data="first"),
    SSEEvent(event="message_start", data='{"a": 1}'),
    SSEEvent(event=None, data="line one\nline two\n"),
    SSEEvent(event=None, data="no-space"),
    SSEEvent(event="only-an-event", data=""),
    SSEEvent(event=None, data="Grüß dich 👋"),
    SSEEvent(event=None, data=" two spaces keep one"),
]


def _decode(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    out: list[SSEEvent] = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    assert not decoder.has_partial
    return out


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_every_cut_gives_the_same_events(newline: bytes) -> None:
    stream = STREAM.replace(b"\n", newline)
    assert _decode([stream]) == EXPECTED
    for offset in range(len(stream) + 1):
        assert _decode([stream[:offset], stream[offset:]]) == EXPECTED, f"cut at {offset}"
    assert _decode([stream[i : i + 1] for i in range(len(stream))]) == EXPECTED


def test_every_pair_of_cuts_in_a_crlf_stream_gives_the_same_events() -> None:
    stream = b"data: a\r\n\r\nevent: e\r\ndata: b\r\n: c\r\n\r\n"
    expected = [SSEEvent(event=None, data="a"), SSEEvent(event="e", data="b")]
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            assert _decode([stream[:i], stream[i:j], stream[j:]]) == expected, (i, j)


def test_mixed_line_ends_in_one_stream() -> None:
    assert _decode([b"data: a\r\rdata: b\n\ndata: c\r\n\r\n"]) == [
        SSEEvent(event=None, data="a"),
        SSEEvent(event=None, data="b"),
        SSEEvent(event=None, data="c"),
    ]


def test_an_unfinished_event_is_reported_as_partial() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: cut") == []
    assert decoder.has_partial
    decoder = SSEDecoder()
    assert decoder.feed(b"data: whole line, no blank line\n") == []
    assert decoder.has_partial


def test_encode_event_decodes_back() -> None:
    frames = encode_event(b'{"x":1}') + encode_event(b"{}", event="ping")
    assert _decode([frames]) == [SSEEvent(event=None, data='{"x":1}'), SSEEvent(event="ping", data="{}")]


def test_an_event_over_the_limit_fails_however_it_arrives() -> None:
    for pieces in ([b"data: " + b"x" * 200], [b"data: ", b"x" * 100, b"x" * 100], [b"data: x\n"] * 60):
        decoder = SSEDecoder(max_event_bytes=100)
        with pytest.raises(SSEEventTooLarge):
            for piece in pieces:
                decoder.feed(piece)


def test_events_under_the_limit_keep_flowing() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    for _ in range(1000):
        assert decoder.feed(b"data: " + b"x" * 80 + b"\n\n") == [SSEEvent(event=None, data="x" * 80)]


def test_json_string_bodies_are_each_texts_own_encoding() -> None:
    # Quotes, backslashes and the item separator itself inside texts, control characters, multi-byte UTF-8.
    alphabet = ['"', "\\", ",", '","', "a", "é", "👋", "\n", "\x00", "\u2028", " "]
    rng = random.Random(7)
    lists = [[], [""], ["", ""], ['","'], ['\\"', '"\\']]
    lists += [
        ["".join(rng.choices(alphabet, k=rng.randint(0, 6))) for _ in range(rng.randint(1, 8))] for _ in range(500)
    ]
    for texts in lists:
        assert json_string_bodies(texts) == [msgspec.json.encode(text)[1:-1] for text in texts], texts
