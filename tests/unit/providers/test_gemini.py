"""The Gemini streamGenerateContent?alt=sse parser, fed the bytes Google sends (the chunks of
tests/mocks/gemini_server.py, after the API reference): ``data: {...}\\r\\n\\r\\n`` frames, each a whole
GenerateContentResponse with cumulative usageMetadata; thought parts, a thought signature on the first answer part,
text with multi-byte UTF-8, a functionCall arriving whole, finishReason on the last chunk."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from omnirelay.config import UpstreamConfig
from omnirelay.core.errors import GatewayError
from omnirelay.core.events import (
    ChoiceEnd,
    ReasoningDelta,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.types import ChatRequest, Message, Reasoning, TextPart, Usage
from omnirelay.providers.base import StreamParser
from omnirelay.providers.gemini import GeminiProvider
from tests.unit.providers.streams import assert_split_invariant, parse


def _chunk(parts: list[dict[str, Any]], output: int, finish: str | None = None) -> bytes:
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    usage = {"promptTokenCount": 11, "candidatesTokenCount": output, "thoughtsTokenCount": 6, "totalTokenCount": 0}
    body = {"candidates": [cand], "usageMetadata": usage, "modelVersion": "gemini-2.5-pro", "responseId": "resp-1"}
    return b"data: " + msgspec.json.encode(body) + b"\r\n\r\n"


CALL = {"functionCall": {"id": "call_g1", "name": "get_weather", "args": {"city": "Zürich"}}}
CHUNKS = [
    _chunk([{"text": "Think", "thought": True}], 0),
    _chunk([{"text": "ing…", "thought": True}], 0),
    _chunk([{"text": "Grüß ", "thoughtSignature": "sig-g"}], 2),
    _chunk([{"text": "dich 👋"}], 4),
]
BODY = b"".join(CHUNKS) + _chunk([CALL], 9, "STOP")


def _parser() -> StreamParser:
    upstream = UpstreamConfig(name="gemini", provider="gemini", api_key="g-test")
    req = ChatRequest(
        model="gemini-2.5-pro",
        messages=[Message(role="user", content=[TextPart(text="hi")])],
        stream=True,
        reasoning=Reasoning(effort="low"),
    )
    return GeminiProvider(upstream).stream_parser(req)


def test_the_stream_gives_the_same_events_however_it_is_cut() -> None:
    events = assert_split_invariant(_parser, BODY)
    assert events == [
        StreamStart(id="resp-1", model="gemini-2.5-pro", created=0),
        ReasoningDelta(text="Think"),
        ReasoningDelta(text="ing…"),
        ReasoningDelta(signature="sig-g"),
        TextDelta(text="Grüß "),
        TextDelta(text="dich 👋"),
        ToolCallStart(index=0, id="call_g1", name="get_weather"),
        ToolCallArgs(index=0, arguments='{"city":"Zürich"}'),
        ChoiceEnd(finish_reason="tool_calls"),
        # usageMetadata is cumulative: the last one is the total, thoughts counted in the output.
        UsageReport(usage=Usage(input_tokens=11, output_tokens=15, reasoning_tokens=6)),
    ]


def test_lf_framing_gives_the_same_events() -> None:
    assert assert_split_invariant(_parser, BODY.replace(b"\r\n", b"\n")) == parse(_parser(), [BODY])


def test_a_last_chunk_without_its_blank_line_is_still_read() -> None:
    assert parse(_parser(), [BODY.removesuffix(b"\r\n\r\n")]) == parse(_parser(), [BODY])


@pytest.mark.parametrize("cut", [len(CHUNKS[0]), len(b"".join(CHUNKS)), len(BODY) - 10])
def test_a_stream_cut_before_the_finish_reason_fails_on_close(cut: int) -> None:
    parser = _parser()
    parser.feed(BODY[:cut])
    with pytest.raises(GatewayError) as exc:
        parser.close()
    assert exc.value.kind == "upstream"


def test_an_error_chunk_is_the_upstream_status() -> None:
    error = b'data: {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}\r\n\r\n'
    parser = _parser()
    parser.feed(CHUNKS[0])
    with pytest.raises(GatewayError) as exc:
        parser.feed(error)
    assert exc.value.status == 429 and "quota" in exc.value.message
