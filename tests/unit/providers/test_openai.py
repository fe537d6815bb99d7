"""The OpenAI Chat Completions stream parser, fed the SSE bytes OpenAI sends (the frames of
tests/mocks/openai_server.py, after the API reference): reasoning, text with multi-byte UTF-8, a tool call whose
arguments arrive in pieces, a usage chunk and ``[DONE]``."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from omnirelay.config import UpstreamConfig
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import (
    ChoiceEnd,
    ReasoningDelta,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextRun,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.types import ChatRequest, Message, TextPart, Usage
from omnirelay.providers.base import StreamParser
from omnirelay.providers.openai import OpenAIProvider
from tests.unit.providers.streams import assert_split_invariant, parse

BASE = {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4.1"}


def _frame(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
    return b"data: " + msgspec.json.encode({**BASE, "choices": choices, "usage": usage}) + b"\n\n"


def _delta(d: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
    return [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]


USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 30,
    "total_tokens": 42,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 7},
}
CALL = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
FRAMES = [
    _frame(_delta({"role": "assistant", "content": "", "refusal": None})),
    _frame(_delta({"content": None, "reasoning_content": "Think"})),
    _frame(_delta({"content": None, "reasoning_content": "ing…"})),
    _frame(_delta({"content": "Grüß "})),
    _frame(_delta({"content": "dich 👋"})),
    _frame(_delta({"tool_calls": [CALL]})),
    _frame(_delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]})),
    _frame(_delta({"tool_calls": [{"index": 0, "function": {"arguments": '"Zürich"}'}}]})),
    _frame(_delta({}, "tool_calls")),
    _frame([], USAGE),
]
BODY = b"".join(FRAMES) + b"data: [DONE]\n\n"


PROVIDER = OpenAIProvider(UpstreamConfig(name="openai", provider="openai", api_key="sk-test"))
REQUEST = ChatRequest(model="gpt-4.1", messages=[Message(role="user", content=[TextPart(text="hi")])], stream=True)


def _parser() -> StreamParser:
    return PROVIDER.stream_parser(REQUEST)


def test_the_stream_gives_the_same_events_however_it_is_cut() -> None:
    events = assert_split_invariant(_parser, BODY)
    assert events == [
        StreamStart(id="chatcmpl-abc", model="gpt-4.1", created=0),
        ReasoningDelta(text="Think"),
        ReasoningDelta(text="ing…"),
        TextDelta(text="Grüß "),
        TextDelta(text="dich 👋"),
        ToolCallStart(index=0, id="call_1", name="get_weather"),
        ToolCallArgs(index=0, arguments='{"city": '),
        ToolCallArgs(index=0, arguments='"Zürich"}'),
        ChoiceEnd(finish_reason="tool_calls"),
        UsageReport(usage=Usage(input_tokens=12, output_tokens=30, cached_tokens=4, reasoning_tokens=7)),
    ]


def test_crlf_framing_gives_the_same_events() -> None:
    assert assert_split_invariant(_parser, BODY.replace(b"\n", b"\r\n")) == parse(_parser(), [BODY])


@pytest.mark.parametrize("cut", [len(FRAMES[0]), len(b"".join(FRAMES[:5])), len(b"".join(FRAMES[:7])) - 5])
def test_a_stream_cut_before_its_end_fails_on_close(cut: int) -> None:
    parser = _parser()
    parser.feed(BODY[:cut])
    with pytest.raises(GatewayError) as exc:
        parser.close()
    assert exc.value.kind == "upstream"


def test_a_stream_with_every_choice_finished_but_no_done_is_complete() -> None:
    # Some compatible servers end without [DONE]; a finished choice means nothing was lost.
    events = parse(_parser(), [b"".join(FRAMES)])
    assert events == parse(_parser(), [BODY])


def test_an_error_event_mid_stream_is_an_upstream_error() -> None:
    parser = _parser()
    parser.feed(FRAMES[0])
    with pytest.raises(GatewayError) as exc:
        parser.feed(b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n')
    assert exc.value.kind == "upstream" and "overloaded" in exc.value.message


def test_an_empty_stream_fails_on_close() -> None:
    with pytest.raises(GatewayError):
        parse(_parser(), [b""])


def _run_parser() -> StreamParser:
    parser = PROVIDER.run_parser(REQUEST)
    assert parser is not None
    return parser


def _as_deltas(events: list[StreamEvent]) -> list[StreamEvent]:
    """Each run as the text deltas it stands for."""
    out: list[StreamEvent] = []
    for event in events:
        out.extend([TextDelta(text=t) for t in event.texts] if isinstance(event, TextRun) else [event])
    return out


def test_a_run_parser_gives_the_same_text_in_runs_however_the_stream_is_cut() -> None:
    # Many plain content frames in a row, as a fast upstream sends them, between the frames that are parsed.
    plain = [_frame(_delta({"content": f'w{i} "q" \\ é'})) for i in range(40)]
    end = _frame(_delta({}, "stop")) + _frame([], USAGE) + b"data: [DONE]\n\n"
    body = FRAMES[0] + b"".join(plain) + FRAMES[3] + b"".join(plain) + end
    expected = parse(_parser(), [body])
    whole = parse(_run_parser(), [body])
    assert any(isinstance(e, TextRun) and len(e.texts) > 1 for e in whole)  # one read: runs, not deltas
    assert _as_deltas(whole) == expected
    for offset in range(0, len(body) + 1, 7):
        assert _as_deltas(parse(_run_parser(), [body[:offset], body[offset:]])) == expected, offset
