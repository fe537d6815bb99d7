"""Same-format pass-through for Anthropic-in -> Anthropic-up (AnthropicProvider.frame_relay): text deltas of text
blocks reach the caller byte for byte; every other event is parsed, at every cut of the body; the Anthropic
encoder sends forwarded deltas as they are only when they continue the text block it has open under the same
index, and renders them otherwise."""

from __future__ import annotations

from typing import Any

import msgspec

from omnirelay.config import UpstreamConfig
from omnirelay.core.events import (
    ChoiceEnd,
    RawFrames,
    ReasoningDelta,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.types import ChatRequest, Message, TextPart
from omnirelay.protocols.anthropic_messages import PROTOCOL
from omnirelay.providers.anthropic import AnthropicProvider
from omnirelay.providers.base import StreamParser
from omnirelay.wire.anthropic_messages import STREAM_FORMAT


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + msgspec.json.encode({"type": name, **data}) + b"\n\n"


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event("content_block_delta", {"index": index, "delta": delta})


MESSAGE: dict[str, Any] = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [],
    "stop_reason": None,
    "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 1},
}
START = _event("message_start", {"message": MESSAGE}) + _event("ping", {})
TEXTS = ["Grüß ", "dich ", "👋", ' "quoted"', " end"]
TEXT_DELTAS = [_delta(0, {"type": "text_delta", "text": t}) for t in TEXTS]
TEXT_BLOCK = (
    _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    + b"".join(TEXT_DELTAS)
    + _event("content_block_stop", {"index": 0})
)
END = _event(
    "message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 7}}
) + _event("message_stop", {})
BODY = START + TEXT_BLOCK + END


def _relay() -> StreamParser:
    provider = AnthropicProvider(UpstreamConfig(name="anthropic", provider="anthropic", api_key="sk-ant-test"))
    req = ChatRequest(model="claude-sonnet-4-20250514", messages=[Message(role="user", content=[TextPart(text="hi")])])
    relay = provider.frame_relay(req, STREAM_FORMAT)
    assert relay is not None
    return relay


def _run(pieces: list[bytes]) -> list[StreamEvent]:
    relay = _relay()
    out: list[StreamEvent] = []
    for piece in pieces:
        out.extend(relay.feed(piece))
    return out + relay.close()


def _raw(events: list[StreamEvent]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, RawFrames))


def test_text_deltas_are_forwarded_byte_for_byte_at_every_cut() -> None:
    for offset in range(len(BODY) + 1):
        events = _run([BODY[:offset], BODY[offset:]])
        assert _raw(events) == b"".join(TEXT_DELTAS[1:]), offset  # the first one is parsed (the head)
        kinds = [type(e) for e in events if not isinstance(e, RawFrames)]
        assert kinds == [StreamStart, UsageReport, TextDelta, ChoiceEnd, UsageReport], offset
        assert [t for e in events if isinstance(e, RawFrames) for t in e.texts] == TEXTS[1:]
        assert {e.block for e in events if isinstance(e, RawFrames)} == {0}


def test_only_text_block_deltas_pass_through() -> None:
    thinking = (
        _event("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}})
        + _delta(0, {"type": "thinking_delta", "thinking": "hmm"})
        + _delta(0, {"type": "signature_delta", "signature": "sig"})
        + _event("content_block_stop", {"index": 0})
    )
    text = (
        _event("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}})
        + _delta(1, {"type": "text_delta", "text": "a"})
        + _delta(1, {"type": "text_delta", "text": "b"})
        + _event("content_block_stop", {"index": 1})
    )
    tool = (
        _event("content_block_start", {"index": 2, "content_block": {"type": "tool_use", "id": "t1", "name": "f"}})
        + _delta(2, {"type": "input_json_delta", "partial_json": '{"x": 1}'})
        + _event("content_block_stop", {"index": 2})
    )
    events = _run([START + thinking + text + tool + END])
    raw = [e for e in events if isinstance(e, RawFrames)]
    assert [(e.data, e.block) for e in raw] == [
        (text[text.index(b"event: content_block_delta") : text.rindex(b"event: content_block_stop")], 1)
    ]
    kinds = [type(e) for e in events if not isinstance(e, RawFrames)]
    assert kinds == [
        StreamStart,
        UsageReport,
        ReasoningDelta,
        ReasoningDelta,
        ToolCallStart,
        ToolCallArgs,
        ChoiceEnd,
        UsageReport,
    ]


def test_error_event_ends_the_stream_after_what_was_forwarded() -> None:
    error = _event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
    events = _run([START + TEXT_BLOCK[: TEXT_BLOCK.index(TEXT_DELTAS[3])] + error + TEXT_DELTAS[3]])
    assert _raw(events) == TEXT_DELTAS[1] + TEXT_DELTAS[2]
    assert isinstance(events[-1], StreamFailure)


def _encoder() -> Any:
    body = {"model": "m", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    enc = PROTOCOL.stream_encoder(PROTOCOL.parse_request(msgspec.json.encode(body), {}))
    enc.encode(StreamStart(id="msg_01", model="m"))
    return enc


def test_encoder_sends_forwarded_deltas_that_continue_its_open_block() -> None:
    enc = _encoder()
    enc.encode(TextDelta(text="first"))  # opens text block 0
    frames = RawFrames(data=b"".join(TEXT_DELTAS[1:]), texts=TEXTS[1:], block=0)
    assert enc.encode(frames) == frames.data


def test_encoder_renders_forwarded_deltas_of_another_block_number() -> None:
    enc = _encoder()
    enc.encode(TextDelta(text="first"))  # the encoder's block 0; the upstream's text is block 1
    frames = RawFrames(data=b"upstream bytes", texts=["x", "y"], block=1)
    out = enc.encode(frames)
    assert b"upstream bytes" not in out
    datas = [msgspec.json.decode(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
    assert [(d["index"], d["delta"]["text"]) for d in datas] == [(0, "x"), (0, "y")]
