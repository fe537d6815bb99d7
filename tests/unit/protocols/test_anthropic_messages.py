"""The Anthropic Messages inbound protocol's pure translation: a representative request body (system blocks,
thinking and tool_use turns, a tool_result, tool choice, thinking budget) -> the canonical request; bad bodies ->
a 400 naming the field; the reply and the stream rendered, then read back with the Anthropic upstream parser
(which speaks the same wire format)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from omnirelay.config import UpstreamConfig
from omnirelay.core.errors import GatewayError
from omnirelay.core.estimate import estimate_request_tokens
from omnirelay.core.events import (
    ChoiceEnd,
    ReasoningDelta,
    StreamEvent,
    StreamFailure,
    StreamStart,
    TextDelta,
    ToolCallArgs,
    ToolCallStart,
    UsageReport,
)
from omnirelay.core.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    Message,
    Reasoning,
    ReasoningPart,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from omnirelay.protocols.anthropic_messages import PROTOCOL
from omnirelay.providers.anthropic import AnthropicProvider
from tests.unit.providers.streams import parse

BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-20250514",
    "max_tokens": 50,
    "stream": True,
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "t", "signature": "sig"},
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "failed", "is_error": True},
                {"type": "text", "text": "and?"},
            ],
        },
    ],
    "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 2000},
    "stop_sequences": ["END"],
    "metadata": {"user_id": "u"},
    "top_k": 5,
}


def _parse(body: dict[str, Any]) -> ChatRequest:
    return PROTOCOL.parse_request(msgspec.json.encode(body), {})


def test_a_representative_request_maps_to_the_canonical_fields() -> None:
    req = _parse(BODY)
    assert req.messages == [
        Message(role="system", content=[TextPart(text="Be brief.")]),
        Message(role="user", content=[TextPart(text="hi")]),
        Message(
            role="assistant",
            tool_calls=[ToolCall(id="toolu_1", name="f", arguments='{"a":1}')],
            reasoning=[ReasoningPart(text="t", signature="sig")],
        ),
        # A tool result becomes a tool message (named after its call: Gemini needs the name), then the text.
        Message(role="tool", content=[TextPart(text="failed")], tool_call_id="toolu_1", name="f", is_error=True),
        Message(role="user", content=[TextPart(text="and?")]),
    ]
    assert req.tools == [Tool(name="f", description="d", parameters={"type": "object"})]
    assert (req.tool_choice, req.parallel_tool_calls) == (ToolChoice(mode="tool", name="f"), False)
    assert req.reasoning == Reasoning(budget_tokens=2000)
    assert (req.max_tokens, req.stop, req.top_k, req.user, req.stream) == (50, ["END"], 5, "u", True)
    assert req.inbound_protocol == "anthropic"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": "5", "messages": []}, "max_tokens"),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}],
            },
            "messages[0].content[0].source.media_type",
        ),
    ],
)
def test_a_bad_field_is_a_400_naming_it(body: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as exc:
        _parse(body)
    assert (exc.value.kind, exc.value.status, exc.value.param) == ("invalid_request", 400, param)


def _provider() -> AnthropicProvider:
    return AnthropicProvider(UpstreamConfig(name="a", provider="anthropic"))


def test_the_rendered_reply_reads_back_as_the_same_response() -> None:
    message = Message(
        role="assistant",
        content=[TextPart(text="Grüß dich")],
        tool_calls=[ToolCall(id="toolu_9", name="f", arguments='{"a":1}')],
        reasoning=[ReasoningPart(text="thought", signature="sig")],
    )
    usage = Usage(input_tokens=10, output_tokens=4, cached_tokens=3, cache_write_tokens=2, reasoning_tokens=2)
    resp = ChatResponse(
        id="msg_01",
        model="claude-sonnet-4-20250514",
        created=5,
        choices=[Choice(index=0, message=message, finish_reason="tool_calls")],
        usage=usage,
        cost=0.25,
    )
    req = _parse(BODY)
    body = PROTOCOL.render_response(resp, req)
    wire = msgspec.json.decode(body)
    # Anthropic's input_tokens exclude cache reads and writes.
    assert wire["usage"]["input_tokens"] == 5 and wire["usage"]["cost"] == 0.25
    assert wire["stop_reason"] == "tool_use"
    back = _provider().parse_response(body, req)
    assert back.usage == usage and back.model == "claude-sonnet-4-20250514"
    assert back.choices == resp.choices


EVENTS: list[StreamEvent] = [
    StreamStart(id="msg_01", model="claude-sonnet-4-20250514", created=0),
    ReasoningDelta(text="hm"),
    ReasoningDelta(signature="sig"),
    TextDelta(text="Grüß 👋"),
    ToolCallStart(index=0, id="toolu_9", name="f"),
    ToolCallArgs(index=0, arguments='{"a"'),
    ToolCallArgs(index=0, arguments=":1}"),
    ChoiceEnd(finish_reason="tool_calls"),
    UsageReport(usage=Usage(input_tokens=3, output_tokens=4)),
]


def test_the_rendered_stream_reads_back_as_the_same_events() -> None:
    req = _parse(BODY)
    encoder = PROTOCOL.stream_encoder(req)
    body = b"".join(encoder.encode(e) for e in EVENTS) + encoder.finish(0.5)
    assert body.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    events = parse(_provider().stream_parser(req), [body])
    start = events[0]
    assert isinstance(start, StreamStart) and start.id.startswith("msg_") and start.model == "claude-sonnet-4-20250514"
    # message_start carries the usage known so far (none yet from the upstream: the prompt's estimate); the rest
    # is what was rendered.
    assert events[1] == UsageReport(usage=Usage(input_tokens=estimate_request_tokens(req)))
    assert events[2:] == EVENTS[1:]


def test_a_stream_error_is_an_error_event() -> None:
    req = _parse(BODY)
    encoder = PROTOCOL.stream_encoder(req)
    body = encoder.encode(EVENTS[0]) + encoder.encode(EVENTS[3])
    body += encoder.error(GatewayError("overloaded", "upstream overloaded"))
    events = parse(_provider().stream_parser(req), [body])
    failure = events[-1]
    assert isinstance(failure, StreamFailure) and failure.error.kind == "overloaded"
    assert "upstream overloaded" in failure.error.message
