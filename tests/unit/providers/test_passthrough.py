"""Same-format pass-through (providers/passthrough.py, OpenAIProvider.frame_relay): chat-completions frames reach
the caller byte for byte, while the frames the gateway needs (first content, finish, usage, errors, terminator) are
still parsed, at every cut of the body."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from omnirelay.config import UpstreamConfig
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import (
    ChoiceEnd,
    RawFrames,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.types import ChatRequest, Message, TextPart, Usage
from omnirelay.providers.base import StreamParser
from omnirelay.providers.openai import OpenAIProvider
from omnirelay.wire.openai_chat import STREAM_FORMAT

BASE = {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4.1"}
USAGE = {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}


def _frame(choices: list[dict[str, Any]], usage: Any = None, base: dict[str, Any] = BASE) -> bytes:
    return b"data: " + msgspec.json.encode({**base, "choices": choices, "usage": usage}) + b"\n\n"


def _delta(d: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
    return [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]


ROLE = _frame(_delta({"role": "assistant", "content": "", "refusal": None}))
FIRST = _frame(_delta({"content": "Hello"}))
CONTENT = [_frame(_delta({"content": f" word{i}"})) for i in range(6)]
FINISH = _frame(_delta({}, "stop"))
USAGE_FRAME = _frame([], USAGE)
DONE = b"data: [DONE]\n\n"
BODY = ROLE + FIRST + b"".join(CONTENT) + FINISH + USAGE_FRAME + DONE


def _request(n: int = 1) -> ChatRequest:
    return ChatRequest(model="gpt-4.1", messages=[Message(role="user", content=[TextPart(text="hi")])], n=n)


def _relay(req: ChatRequest | None = None) -> StreamParser:
    provider = OpenAIProvider(UpstreamConfig(name="openai", provider="openai", api_key="sk-test"))
    relay = provider.frame_relay(req or _request(), STREAM_FORMAT)
    assert relay is not None
    return relay


def _run(pieces: list[bytes], relay: StreamParser | None = None) -> list[StreamEvent]:
    relay = relay or _relay()
    out: list[StreamEvent] = []
    for piece in pieces:
        out.extend(relay.feed(piece))
    out.extend(relay.close())
    return out


def _raw(events: list[StreamEvent]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, RawFrames))


def _parsed(events: list[StreamEvent]) -> list[StreamEvent]:
    return [e for e in events if not isinstance(e, RawFrames)]


def test_content_frames_are_forwarded_byte_for_byte_at_every_cut() -> None:
    expected = [
        StreamStart(id="chatcmpl-abc", model="gpt-4.1", created=1700000000),
        TextDelta(text="Hello"),
        ChoiceEnd(finish_reason="stop"),
        UsageReport(usage=Usage(input_tokens=12, output_tokens=30)),
    ]
    for offset in range(len(BODY) + 1):
        events = _run([BODY[:offset], BODY[offset:]])
        # Role and first content frame are parsed (the encoder renders them); the rest goes out as it came,
        # but for the finish (parsed), the usage frame (the encoder renders it with the cost) and [DONE].
        assert _raw(events) == b"".join(CONTENT), offset
        assert _parsed(events) == expected, offset


def test_whole_body_in_one_read_is_one_forwarded_piece() -> None:
    events = _run([BODY])
    assert [type(e) for e in events] == [StreamStart, TextDelta, RawFrames, ChoiceEnd, UsageReport]


def test_stream_cut_after_content_is_an_error() -> None:
    with pytest.raises(GatewayError, match="ended before it was complete"):
        _run([ROLE + FIRST + b"".join(CONTENT)])


def test_stream_cut_mid_frame_is_an_error() -> None:
    with pytest.raises(GatewayError):
        _run([ROLE + FIRST + CONTENT[0] + CONTENT[1][:30]])


def test_error_frame_mid_stream_ends_after_what_came_before() -> None:
    error = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    events = _run([ROLE + FIRST + CONTENT[0] + CONTENT[1] + error + CONTENT[2]])
    assert _raw(events) == CONTENT[0] + CONTENT[1]
    failure = events[-1]
    assert isinstance(failure, StreamFailure) and "overloaded" in failure.error.message


def test_sse_error_event_is_parsed_not_forwarded() -> None:
    error = b'event: error\ndata: {"message": "boom"}\n\n'
    events = _run([ROLE + FIRST + CONTENT[0] + error])
    assert _raw(events) == CONTENT[0]
    assert isinstance(events[-1], StreamFailure)


def test_nothing_after_done_is_forwarded() -> None:
    events = _run([BODY + CONTENT[0]])
    assert _raw(events) == b"".join(CONTENT)


def test_tool_call_frames_are_parsed() -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    args = {"index": 0, "function": {"arguments": '{"a": 1}'}}
    body = ROLE + FIRST + CONTENT[0] + _frame(_delta({"tool_calls": [call]})) + _frame(_delta({"tool_calls": [args]}))
    events = _run([body + _frame(_delta({}, "tool_calls")) + USAGE_FRAME + DONE])
    assert _raw(events) == CONTENT[0]
    kinds = [type(e) for e in _parsed(events)]
    assert kinds == [StreamStart, TextDelta, ToolCallStart, ToolCallArgs, ChoiceEnd, UsageReport]


def test_other_ids_stay_canonical() -> None:
    # The encoder prefixes ids with chatcmpl-: forwarded frames would then disagree with the rendered ones.
    base = {**BASE, "id": "0f9c2e"}
    body = b"".join(_frame(_delta({"content": t}), base=base) for t in ("a", "b", "c")) + DONE
    events = _run([body])
    assert _raw(events) == b""
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["a", "b", "c"]


def test_crlf_stream_goes_canonical_from_there() -> None:
    crlf = b"".join(f.replace(b"\n", b"\r\n") for f in CONTENT[1:]) + DONE
    events = _run([ROLE + FIRST + CONTENT[0], crlf])
    assert _raw(events) == CONTENT[0]
    texts = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert texts == "Hello" + "".join(f" word{i}" for i in range(1, 6))


def test_forwarded_frames_count_what_they_produce() -> None:
    events = _run([BODY])
    texts = [t for e in events if isinstance(e, RawFrames) for t in e.texts]
    assert texts == [f" word{i}" for i in range(6)]


def test_malformed_frame_is_a_failure_not_forwarded() -> None:
    events = _run([ROLE + FIRST + CONTENT[0] + b"data: {this is not json}\n\n" + CONTENT[1]])
    assert _raw(events) == CONTENT[0]
    failure = events[-1]
    assert isinstance(failure, StreamFailure) and "malformed" in failure.error.message


def test_comments_and_unmodelled_fields_are_forwarded() -> None:
    # A keep-alive comment is parsed (the canonical path drops it); a field omnirelay does not model goes out.
    odd = _frame(_delta({"content": " more", "refusal": None}), base={**BASE, "obfuscation": "x1"})
    events = _run([ROLE + FIRST + b": keep-alive\n\n" + odd + FINISH + DONE])
    assert _raw(events) == odd


def test_only_same_format_single_choice_streams_pass_through() -> None:
    provider = OpenAIProvider(UpstreamConfig(name="openai", provider="openai", api_key="sk-test"))
    assert provider.frame_relay(_request(), "anthropic_messages") is None
    assert provider.frame_relay(_request(n=2), STREAM_FORMAT) is None
