"""The Anthropic Messages stream parser, fed the SSE bytes Anthropic sends (the events of
tests/mocks/anthropic_server.py, after the streaming reference): message_start with usage, a ping, a thinking
block with its signature, a text block with multi-byte UTF-8, a tool_use block whose input arrives as
input_json_delta pieces, message_delta with the final usage, message_stop."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from omnirelay.config import UpstreamConfig
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import (
    ChoiceEnd,
    ReasoningDelta,
    StreamFailure,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.types import ChatRequest, Message, TextPart, Usage
from omnirelay.providers.anthropic import AnthropicProvider
from omnirelay.providers.base import StreamParser
from tests.unit.providers.streams import assert_split_invariant, parse


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + msgspec.json.encode({"type": name, **data}) + b"\n\n"


def _block(index: int, first: dict[str, Any], deltas: list[dict[str, Any]]) -> list[bytes]:
    return [
        _event("content_block_start", {"index": index, "content_block": first}),
        *(_event("content_block_delta", {"index": index, "delta": d}) for d in deltas),
        _event("content_block_stop", {"index": index}),
    ]


START_USAGE = {"input_tokens": 10, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3, "output_tokens": 1}
MESSAGE: dict[str, Any] = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [],
    "stop_reason": None,
    "stop_sequence": None,
    "usage": START_USAGE,
}
EVENTS = [
    _event("message_start", {"message": MESSAGE}),
    _event("ping", {}),
    *_block(
        0,
        {"type": "thinking", "thinking": "", "signature": ""},
        [
            {"type": "thinking_delta", "thinking": "Let me "},
            {"type": "thinking_delta", "thinking": "think…"},
            {"type": "signature_delta", "signature": "sig-1"},
        ],
    ),
    *_block(
        1,
        {"type": "text", "text": ""},
        [{"type": "text_delta", "text": "Grüß "}, {"type": "text_delta", "text": "dich 👋"}],
    ),
    *_block(
        2,
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
        [
            {"type": "input_json_delta", "partial_json": ""},
            {"type": "input_json_delta", "partial_json": '{"city": '},
            {"type": "input_json_delta", "partial_json": '"Zürich"}'},
        ],
    ),
    _event(
        "message_delta",
        {
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 25, "output_tokens_details": {"thinking_tokens": 9}},
        },
    ),
]
BODY = b"".join(EVENTS) + _event("message_stop", {})


def _parser() -> StreamParser:
    upstream = UpstreamConfig(name="anthropic", provider="anthropic", api_key="sk-ant-test")
    req = ChatRequest(
        model="claude-sonnet-4-20250514", messages=[Message(role="user", content=[TextPart(text="hi")])], stream=True
    )
    return AnthropicProvider(upstream).stream_parser(req)


def test_the_stream_gives_the_same_events_however_it_is_cut() -> None:
    events = assert_split_invariant(_parser, BODY)
    # Anthropic's input_tokens exclude cache reads and writes; the canonical input counts them.
    start_usage = Usage(input_tokens=15, output_tokens=1, cached_tokens=3, cache_write_tokens=2)
    final_usage = Usage(input_tokens=15, output_tokens=25, cached_tokens=3, cache_write_tokens=2, reasoning_tokens=9)
    assert events == [
        StreamStart(id="msg_01", model="claude-sonnet-4-20250514", created=0),
        UsageReport(usage=start_usage),
        ReasoningDelta(text="Let me "),
        ReasoningDelta(text="think…"),
        ReasoningDelta(signature="sig-1"),
        TextDelta(text="Grüß "),
        TextDelta(text="dich 👋"),
        ToolCallStart(index=0, id="toolu_1", name="get_weather"),
        ToolCallArgs(index=0, arguments='{"city": '),
        ToolCallArgs(index=0, arguments='"Zürich"}'),
        ChoiceEnd(finish_reason="tool_calls"),
        UsageReport(usage=final_usage),
    ]


def test_crlf_framing_gives_the_same_events() -> None:
    assert assert_split_invariant(_parser, BODY.replace(b"\n", b"\r\n")) == parse(_parser(), [BODY])


@pytest.mark.parametrize("events", [1, 5, len(EVENTS)])
def test_a_stream_cut_before_message_stop_fails_on_close(events: int) -> None:
    parser = _parser()
    parser.feed(b"".join(EVENTS[:events]))
    with pytest.raises(GatewayError) as exc:
        parser.close()
    assert exc.value.kind == "upstream"


def test_an_error_event_after_the_start_ends_the_stream_with_the_failure() -> None:
    error = b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
    events = parse(_parser(), [b"".join(EVENTS[:2]), error])
    failure = events[-1]
    assert isinstance(failure, StreamFailure)
    assert failure.error.kind == "overloaded" and "Overloaded" in failure.error.message


def test_an_error_event_before_the_start_raises() -> None:
    error = b'event: error\ndata: {"type": "error", "error": {"type": "api_error", "message": "boom"}}\n\n'
    with pytest.raises(GatewayError):
        _parser().feed(error)
