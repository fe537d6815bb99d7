"""The hand-built text-delta frames of the Anthropic and Responses stream encoders (their most frequent frame, built
from bytes parts instead of encoding a Struct each time) are byte for byte what encoding the wire Struct gives, for
texts that need JSON escaping and multi-byte UTF-8."""

from __future__ import annotations

import itertools
import time

import msgspec
import pytest

from omnirelay.core import ids
from omnirelay.core.events import (
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextRun,
    ToolCallArgs,
    ToolCallStart,
)
from omnirelay.protocols.anthropic_messages import PROTOCOL as ANTHROPIC
from omnirelay.protocols.base import StreamEncoder
from omnirelay.protocols.openai_chat import PROTOCOL as CHAT
from omnirelay.protocols.openai_responses import PROTOCOL as RESPONSES
from omnirelay.wire import anthropic_messages as anthropic_wire
from omnirelay.wire import openai_responses as responses_wire
from omnirelay.wire.sse import encode_event

TEXTS = ["plain", 'quote " and \\ backslash', "line\nbreak\ttab", "Grüß dich 👋", "\u2028 \x01 </script>"]
ENC = msgspec.json.Encoder()


def _data_of(frame: bytes) -> dict[str, object]:
    line = next(x for x in frame.split(b"\n") if x.startswith(b"data: "))
    decoded: dict[str, object] = msgspec.json.decode(line[6:])
    return decoded


def _anthropic_encoder() -> StreamEncoder:
    req = ANTHROPIC.parse_request(
        msgspec.json.encode(
            {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]}
        ),
        {},
    )
    return ANTHROPIC.stream_encoder(req)


def _responses_encoder() -> StreamEncoder:
    return RESPONSES.stream_encoder(
        RESPONSES.parse_request(msgspec.json.encode({"model": "m", "input": "x", "stream": True}), {})
    )


def _chat_encoder() -> StreamEncoder:
    return CHAT.stream_encoder(
        CHAT.parse_request(
            msgspec.json.encode({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]}), {}
        )
    )


@pytest.mark.parametrize("text", TEXTS)
def test_anthropic_text_delta_is_the_struct_encoding(text: str) -> None:
    enc = _anthropic_encoder()
    enc.encode(StreamStart(id="msg_1", model="m"))
    enc.encode(TextDelta(text="first"))  # opens the text block (the general path)
    frame = enc.encode(TextDelta(text=text))  # the fast path
    delta = anthropic_wire.AnyDelta(type="text_delta", text=text)
    expected = encode_event(
        ENC.encode(anthropic_wire.ContentBlockDeltaEvent(index=0, delta=delta)), "content_block_delta"
    )
    assert frame == expected


@pytest.mark.parametrize("text", TEXTS)
def test_responses_text_delta_is_the_struct_encoding(text: str) -> None:
    enc = _responses_encoder()
    enc.encode(StreamStart(id="r", model="m"))
    opening = enc.encode(TextDelta(text="first"))  # opens the message item (the general path)
    item_id = str(_data_of(opening.split(b"\n\n")[-2])["item_id"])
    frame = enc.encode(TextDelta(text=text))  # the fast path
    seq = int(str(_data_of(frame)["sequence_number"]))
    event = responses_wire.OutputTextDelta(
        sequence_number=seq, item_id=item_id, output_index=0, content_index=0, delta=text
    )
    assert frame == encode_event(ENC.encode(event), "response.output_text.delta")
    assert seq == int(str(_data_of(opening.split(b"\n\n")[-2])["sequence_number"])) + 1


# -- runs of text deltas (TextRun): what one TextDelta per text would give, byte for byte ----------------------

RUN = ["first", *TEXTS, '","', '\\","\\', "last"]


ENCODERS = {"anthropic": _anthropic_encoder, "responses": _responses_encoder, "chat": _chat_encoder}

# Before the run: nothing (the run starts the message), an open text block, or another kind of block.
LEADS: dict[str, list[StreamEvent]] = {
    "start": [StreamStart(id="msg_1", model="m")],
    "text-open": [StreamStart(id="msg_1", model="m"), TextDelta(text="before")],
    "after-tool-call": [
        StreamStart(id="msg_1", model="m"),
        ToolCallStart(index=0, id="call_1", name="f"),
        ToolCallArgs(index=0, arguments="{}"),
    ],
    "after-reasoning": [StreamStart(id="msg_1", model="m"), ReasoningDelta(text="hmm")],
}


def _rendered(protocol: str, events: list[StreamEvent], monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes | None]:
    """The frames (and the stored result) of a fresh encoder, with the ids and clocks it reads made repeatable."""
    monkeypatch.setattr(ids, "_counter", itertools.count())
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    encoder = ENCODERS[protocol]()
    frames = b"".join(encoder.encode(event) for event in events) + encoder.finish(0.0)
    return frames, encoder.result()


@pytest.mark.parametrize("lead", LEADS)
@pytest.mark.parametrize("protocol", ENCODERS)
def test_a_text_run_renders_as_its_text_deltas_would(protocol: str, lead: str, monkeypatch: pytest.MonkeyPatch) -> None:
    head = LEADS[lead]
    expected = _rendered(protocol, [*head, *(TextDelta(text=t) for t in RUN), TextDelta(text="tail")], monkeypatch)
    runs = [*head, TextRun(texts=RUN[:3]), TextRun(texts=RUN[3:]), TextDelta(text="tail")]
    assert _rendered(protocol, runs, monkeypatch) == expected
    frames = expected[0]
    assert all(ENC.encode(text)[1:-1] in frames for text in RUN)  # the comparison is over frames carrying the run


@pytest.mark.parametrize("protocol", ["anthropic", "responses"])
def test_a_text_run_of_another_choice_gives_what_its_deltas_give(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = StreamStart(id="msg_1", model="m")
    expected = _rendered(protocol, [start, TextDelta(text="x", choice=1), TextDelta(text="y", choice=1)], monkeypatch)
    assert _rendered(protocol, [start, TextRun(texts=["x", "y"], choice=1)], monkeypatch) == expected
